"""The ``dynamodb:`` config section: ``{}`` (ListTables) or ``{table: NAME | table ARN}``.

A plain value check (not a ``Section``) so that an absent (or null) section stays distinguishable
from an empty one: absent means "check DynamoDB only where the EC2 view shows a gateway endpoint for it".
"""
from __future__ import annotations

import re
from typing import Any

from .config_values import Invalid
from .errors import show

EXPECTED = "a mapping like {table: my-table} (DescribeTable) or {} (ListTables)"
# DynamoDB TableName: 3-255 of a-z A-Z 0-9 _ . - (DynamoDB Developer Guide, "Naming rules").
_TABLE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_TABLE_ARN = re.compile(r"^arn:aws(?:-cn|-us-gov)?:dynamodb:[a-z]{2}(?:-[a-z]+)+-\d+:\d{12}:table/[A-Za-z0-9_.-]{3,255}$")


def dynamodb_section(value: Any) -> str:
    """The table to describe ("" for none: ListTables)."""
    if not isinstance(value, dict):
        raise Invalid(f"{show(value)} is not a mapping", EXPECTED)
    unknown = [k for k in value if k != "table"]
    if unknown:
        raise Invalid(f"unknown key {show(unknown[0], 40)}", "only table")
    table = value.get("table")
    if table is None:
        return ""
    if not isinstance(table, str) or not (_TABLE.match(table) or _TABLE_ARN.match(table)):
        raise Invalid(f"table {show(table)} is not a DynamoDB table name",
                      "3-255 letters, digits, _ . - (or a table ARN arn:aws:dynamodb:<region>:<account>:table/<name>)")
    return table
