"""Validate a JSON request against its botocore input shape, the way AWS's front end does.

AWS checks every request against the service model (lengths, patterns, ranges, enums, required
members) before the service code runs, and answers ``ValidationException`` with messages such as
``1 validation error detected: Value 'i-083e1601960282cd' at 'instanceId' failed to satisfy
constraint: Member must satisfy regular expression pattern: (^i-(\\w{8}|\\w{17})$)|(^mi-\\w{17}$)``
(seen from SSM, aws/aws-cli#7048). Paths use the model's member names with a lower-case first letter;
list members are ``name.<1-based index>.member``.

botocore itself only checks types, required members and minimums on the client side, so a boto3
client does send requests that break ``max`` and ``pattern``: this is what catches them in the lab.
"""
from __future__ import annotations

import re
from typing import Any, Callable, List, Optional

from botocore.model import Shape

# A member the caller wants to validate itself (with a service-specific error): (structure, member).
SkipMember = Callable[[str, str], bool]

_MAX_VALUE_CHARS = 120  # keep huge values out of error messages


class ShapeMismatch(Exception):
    """The JSON does not even have the model's types (AWS: SerializationException)."""


def validate(shape: Shape, value: Any, skip: Optional[SkipMember] = None) -> List[str]:
    """Every constraint violation, in model order, as AWS words it (empty list: valid)."""
    errors: List[str] = []
    _check(shape, value, "", errors, skip or (lambda _s, _m: False))
    return errors


def validation_message(errors: List[str]) -> str:
    count = len(errors)
    noun = "error" if count == 1 else "errors"
    return f"{count} validation {noun} detected: " + "; ".join(errors)


def _check(shape: Shape, value: Any, path: str, errors: List[str], skip: SkipMember) -> None:
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise ShapeMismatch(f"{path or 'request'}: expected an object")
        for name in shape.required_members:
            if value.get(name) is None:
                errors.append(f"Value null at '{_join(path, name)}' failed to satisfy constraint: "
                              "Member must not be null")
        for name, member in shape.members.items():
            if name in value and value[name] is not None and not skip(shape.name, name):
                _check(member, value[name], _join(path, name), errors, skip)
    elif kind == "list":
        if not isinstance(value, list):
            raise ShapeMismatch(f"{path}: expected a list")
        _length(shape, value, len(value), path, errors)
        for index, item in enumerate(value, start=1):
            _check(shape.member, item, f"{path}.{index}.member", errors, skip)
    elif kind == "map":
        if not isinstance(value, dict):
            raise ShapeMismatch(f"{path}: expected an object")
        _length(shape, value, len(value), path, errors)
        for key, item in value.items():
            key_errors = _scalar_errors(shape.key, key)
            if key_errors:
                errors.append(f"Value '{_show(key)}' at '{path}' failed to satisfy constraint: "
                              f"Map keys must satisfy constraint: [{', '.join(key_errors)}]")
            if shape.value.type_name == "string":
                if not isinstance(item, str):
                    raise ShapeMismatch(f"{path}: map values must be strings")
                value_errors = _scalar_errors(shape.value, item)
                if value_errors:
                    errors.append(f"Value '{_show(item)}' at '{path}' failed to satisfy constraint: "
                                  f"Map value must satisfy constraint: [{', '.join(value_errors)}]")
            else:
                _check(shape.value, item, f"{path}.{_show(key)}", errors, skip)
    elif kind == "string":
        if not isinstance(value, str):
            raise ShapeMismatch(f"{path}: expected a string")
        for problem in _scalar_errors(shape, value):
            errors.append(f"Value '{_show(value)}' at '{path}' failed to satisfy constraint: {problem}")
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ShapeMismatch(f"{path}: expected an integer")
        for problem in _range_errors(shape, value):
            errors.append(f"Value '{value}' at '{path}' failed to satisfy constraint: {problem}")
    elif kind == "boolean" and not isinstance(value, bool):
        raise ShapeMismatch(f"{path}: expected a boolean")


def _scalar_errors(shape: Shape, value: str) -> List[str]:
    problems = []
    meta = shape.metadata
    if "enum" in meta and value not in meta["enum"]:
        problems.append(f"Member must satisfy enum value set: [{', '.join(meta['enum'])}]")
    if "max" in meta and len(value) > meta["max"]:
        problems.append(f"Member must have length less than or equal to {meta['max']}")
    if "min" in meta and len(value) < meta["min"]:
        problems.append(f"Member must have length greater than or equal to {meta['min']}")
    if "pattern" in meta and not re.search(meta["pattern"], value):
        problems.append(f"Member must satisfy regular expression pattern: {meta['pattern']}")
    return problems


def _range_errors(shape: Shape, value: int) -> List[str]:
    meta = shape.metadata
    if "max" in meta and value > meta["max"]:
        return [f"Member must have value less than or equal to {meta['max']}"]
    if "min" in meta and value < meta["min"]:
        return [f"Member must have value greater than or equal to {meta['min']}"]
    return []


def _length(shape: Shape, value: Any, size: int, path: str, errors: List[str]) -> None:
    meta = shape.metadata
    if "max" in meta and size > meta["max"]:
        errors.append(f"Value '{_show(value)}' at '{path}' failed to satisfy constraint: "
                      f"Member must have length less than or equal to {meta['max']}")
    if "min" in meta and size < meta["min"]:
        errors.append(f"Value '{_show(value)}' at '{path}' failed to satisfy constraint: "
                      f"Member must have length greater than or equal to {meta['min']}")


def _join(path: str, member: str) -> str:
    name = member[:1].lower() + member[1:]
    return f"{path}.{name}" if path else name


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else _java_like(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[:_MAX_VALUE_CHARS] + "..."


def _java_like(value: Any) -> str:
    """Lists and maps print the way the Java front end prints them: [a, b] and {k=v}."""
    if isinstance(value, list):
        return "[" + ", ".join(_java_like(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_java_like(v)}" for k, v in value.items()) + "}"
    return str(value)
