"""Reading a config file safely: at most 1 MiB, UTF-8 without NUL bytes, YAML with plain values only
(safe_load semantics), each key once, and aliases that cannot multiply the document ("billion
laughs": counted on the node graph before anything is built)."""
from __future__ import annotations

import os
import stat
from typing import Any, Dict, Set

import yaml

from .config_values import Problem, join_path, one_line
from .errors import ConfigError, show

MAX_FILE_BYTES = 1024 * 1024  # refuse bigger files before parsing: a config is a few KiB


class _Loader(yaml.SafeLoader):
    """safe_load semantics (no arbitrary objects); duplicate keys are found on the node tree."""


MAX_EXPANDED_NODES = 20_000  # a full config is a few hundred values; aliases may not multiply them


def _expanded_size(node: yaml.Node, memo: Dict[int, int]) -> int:
    """How many values the document holds once every alias is expanded, counted on the node graph
    (each node once, so a "billion laughs" file costs what it is long, not what it expands to).
    Recursion stays shallow: the parser refuses deeper nesting first (RecursionError below)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = MAX_EXPANDED_NODES + 1  # a cycle (not possible in YAML 1.1, but cheap to guard)
    total = 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            total += _expanded_size(k, memo) + _expanded_size(v, memo)
            if total > MAX_EXPANDED_NODES:
                break
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            total += _expanded_size(item, memo)
            if total > MAX_EXPANDED_NODES:
                break
    memo[key] = total
    return total


def _check_duplicates(node: yaml.Node, path: str, seen: Set[int]) -> None:
    if id(node) in seen:  # aliases share nodes: visit each once (no exponential walk on anchors)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: Dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            child = join_path(path, str(key)) if key is not None else path
            if key is not None and key != "<<":
                if key in keys:
                    mark = key_node.start_mark
                    raise Problem(child, f"duplicate key {show(key)} (line {mark.line + 1}; first on line "
                                   f"{keys[key].start_mark.line + 1})", "each key once")
                keys[key] = key_node
            _check_duplicates(value_node, child, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicates(item, f"{path}[{i}]", seen)


def load_yaml(text: str, source: str) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_EXPANDED_NODES:
            raise Problem("(document)", f"aliases expand to more than {MAX_EXPANDED_NODES} values",
                           "a plain settings file (anchors and aliases only for small repeats)")
        _check_duplicates(node, "", set())
        return loader.construct_document(node)
    except Problem as p:
        raise ConfigError(one_line(f"{source}: {p.path}: {p.what}; expected {p.expected}")) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(document)"
        problem = " ".join(x for x in (exc.context, exc.problem) if x) or "invalid YAML"
        if isinstance(exc, yaml.constructor.ConstructorError):
            problem = f"{problem} (only plain YAML values are allowed)"
        raise ConfigError(one_line(f"{source}: {where}: YAML error: {problem}; expected valid YAML "
                                    "with plain values")) from None
    except yaml.YAMLError as exc:
        raise ConfigError(one_line(f"{source}: (document): YAML error: {exc}; expected valid YAML")) from None
    except RecursionError:
        raise ConfigError(f"{source}: (document): the YAML is nested too deeply; expected a plain "
                          "settings file") from None
    finally:
        loader.dispose()


def read_text(path: str) -> str:
    expected = "a readable YAML file"
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # a directory, FIFO or device: open() could block or mislead
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise ConfigError(f"{path}: (file): is {kind}; expected {expected}")
        with open(path, "rb") as fh:
            if st.st_size > MAX_FILE_BYTES:
                raise ConfigError(f"{path}: (file): {st.st_size} bytes is too large; expected a YAML file "
                                  f"of at most {MAX_FILE_BYTES} bytes (1 MiB)")
            raw = fh.read(MAX_FILE_BYTES + 1)  # bounded even for a FIFO or /dev/zero
    except OSError as exc:
        raise ConfigError(one_line(f"{path}: (file): cannot read: {exc.strerror or exc}; expected {expected}")) \
            from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: (file): more than {MAX_FILE_BYTES} bytes; expected a YAML file "
                          "of at most 1 MiB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: (file): not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                          "expected a UTF-8 YAML file") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: (file): binary data (a NUL byte at offset {text.index(chr(0))}); "
                          "expected a UTF-8 YAML file")
    return text
