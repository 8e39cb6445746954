"""The lab's DynamoDB gateway endpoint: the scenario section ``dynamodb:`` and what it implies.

The reference lab has a DynamoDB gateway endpoint next to S3's (present, routed, policy allows).
Its "public" DynamoDB addresses are 198.51.100.16 and .17, the lab's DynamoDB prefix list
198.51.100.16/28 (docs/lab-contract.md). Like S3's, the router carries them only with the endpoint
AND its route on the instance subnet's table; the endpoint policy is enforced by the AWS layer
(tests/lab/aws/authz.py) for requests that arrive on these addresses.

    dynamodb:
      gateway_endpoint: true     # the VPC has the gateway endpoint
      route: true                # ... associated with the instance subnet's route table
      policy: allow              # allow | deny (explicit deny) | no_allow (allows nothing asked)
      table: {name: vpce-lab-table, region: us-east-1}   # the table the AWS layer creates
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Tuple

DYNAMODB_IPS = ("198.51.100.16", "198.51.100.17")
DYNAMODB_PREFIX_LIST = "198.51.100.16/28"
POLICIES = ("allow", "deny", "no_allow")
TABLE_REGIONS = ("us-east-1", "us-west-2")
_TABLE_RE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")

Fail = Callable[[str, str], None]


@dataclass(frozen=True)
class DynamoDb:
    gateway_endpoint: bool = True
    route: bool = True
    policy: str = "allow"
    table_name: str = "vpce-lab-table"
    table_region: str = "us-east-1"

    @property
    def routed(self) -> bool:
        return self.gateway_endpoint and self.route

    def to_json(self) -> Dict[str, Any]:
        return {"gateway_endpoint": self.gateway_endpoint, "route": self.route, "policy": self.policy,
                "ips": list(DYNAMODB_IPS), "prefix_list_cidrs": [DYNAMODB_PREFIX_LIST],
                "table": {"name": self.table_name, "region": self.table_region}}


def parse(data: Any, fail: Fail) -> DynamoDb:
    if data is None:
        return DynamoDb()
    known = {"gateway_endpoint", "route", "policy", "table"}
    if not isinstance(data, dict) or set(data) - known:
        fail("dynamodb", f"expected a mapping with {', '.join(sorted(known))}")
    flags: Dict[str, bool] = {}
    for key in ("gateway_endpoint", "route"):
        value = data.get(key, True)
        if not isinstance(value, bool):
            fail(f"dynamodb.{key}", f"expected true or false, got {value!r}")
        flags[key] = value
    policy = data.get("policy", "allow")
    if policy not in POLICIES:
        fail("dynamodb.policy", f"expected one of {', '.join(POLICIES)}, got {policy!r}")
    table = data.get("table") or {}
    if not isinstance(table, dict) or set(table) - {"name", "region"}:
        fail("dynamodb.table", "expected a mapping with name and/or region")
    name = table.get("name", DynamoDb.table_name)
    if not isinstance(name, str) or not _TABLE_RE.match(name):
        fail("dynamodb.table.name", f"expected a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -), got {name!r}")
    region = table.get("region", DynamoDb.table_region)
    if region not in TABLE_REGIONS:
        fail("dynamodb.table.region", f"expected one of {', '.join(TABLE_REGIONS)}, got {region!r}")
    return DynamoDb(gateway_endpoint=flags["gateway_endpoint"], route=flags["route"], policy=str(policy),
                    table_name=name, table_region=str(region))


def host_records(region: str, domain: str) -> Dict[str, Tuple[str, ...]]:
    """DynamoDB's regional name (botocore: dynamodb.<region>.amazonaws.com) -> the lab's addresses."""
    return {f"dynamodb.{region}.{domain}": DYNAMODB_IPS}
