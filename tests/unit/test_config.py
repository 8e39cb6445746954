"""The config: good files parse to the documented values; every malformed file gives ONE line that
names the file, the key path and what was expected (the corpus in configs/bad/ carries its expected
fragment on the first line: ``# expect: <fragment>``)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List

import pytest
import yaml

from vpce_doctor import config as config_mod
from vpce_doctor.checks.model import Settings, Target
from vpce_doctor.config import ImdsSettings, load_config, parse_config, validate_file
from vpce_doctor.errors import ConfigError, VpceDoctorError

HERE = Path(__file__).parent
GOOD = HERE / "configs" / "good"
BAD = HERE / "configs" / "bad"
EXAMPLE = HERE.parents[1] / "config.example.yaml"


def _expectation(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: the first line must be '# expect: <fragment>'"
    return first[len("# expect: "):]


def _assert_one_line_error(path: Path, fragment: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(f"{path}: "), message
    assert "; expected " in message, message
    assert fragment in message, f"{fragment!r} not in {message!r}"
    # never a chained traceback: the YAML/OS exception is suppressed
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
    return message


# --- the corpus -------------------------------------------------------------------------------------
def test_corpus_is_big_enough() -> None:
    assert len(list(BAD.glob("*.yaml"))) >= 25


@pytest.mark.parametrize("path", sorted(BAD.glob("*.yaml")), ids=lambda p: p.name)
def test_bad_config(path: Path) -> None:
    _assert_one_line_error(path, _expectation(path))


# --- files generated at test time (binary, huge, odd) ----------------------------------------------------
def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    _assert_one_line_error(path, "(file): not UTF-8 text (byte 0x89 at offset 0)")


def test_nul_bytes_in_utf8(tmp_path: Path) -> None:
    path = tmp_path / "nul.yaml"
    path.write_bytes(b"fips: true\n\x00\x00\x00\n")
    _assert_one_line_error(path, "(file): binary data (a NUL byte at offset 11)")


def test_huge_file_is_refused_before_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "huge.yaml"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("services:\n")
        fh.write("  - ssm\n" * (150 * 1024))  # 1.2 MB of otherwise valid YAML
    assert path.stat().st_size > 1024 * 1024

    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("a file over 1 MiB must not reach the YAML parser")

    monkeypatch.setattr(config_mod, "load_yaml", no_parsing)
    _assert_one_line_error(path, "(file): 1228810 bytes is too large; expected a YAML file of at most 1048576 bytes")


def test_deeply_nested_yaml(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("services: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    message = _assert_one_line_error(path, "")
    assert "nested too deeply" in message or "services" in message


def test_directory_is_an_error(tmp_path: Path) -> None:
    _assert_one_line_error(tmp_path, "(file): is a directory; expected a readable YAML file")


def test_missing_named_file_is_an_error(tmp_path: Path) -> None:
    _assert_one_line_error(tmp_path / "nope.yaml", "(file): cannot read: No such file or directory")


def test_missing_default_file_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_mod, "DEFAULT_CONFIG_PATH", str(tmp_path / "absent.yaml"))
    cfg = load_config(None)
    assert cfg.settings == Settings() and cfg.imds == ImdsSettings() and cfg.deadline_s == 10.0
    assert "absent" in cfg.source


def test_present_default_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("fips: true\n", encoding="utf-8")
    monkeypatch.setattr(config_mod, "DEFAULT_CONFIG_PATH", str(path))
    cfg = load_config(None)
    assert cfg.settings.fips is True and cfg.source == str(path)


def test_config_error_is_our_error_root() -> None:
    assert issubclass(ConfigError, VpceDoctorError)


# --- good configs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(GOOD.glob("*.yaml")), ids=lambda p: p.name)
def test_good_configs_parse(path: Path) -> None:
    cfg = validate_file(str(path))
    assert cfg.source == str(path)


@pytest.mark.parametrize("name", ["empty.yaml", "comments-only.yaml", "null-sections.yaml"])
def test_empty_file_means_defaults(name: str) -> None:
    cfg = load_config(str(GOOD / name))
    assert cfg.settings == Settings()
    assert cfg.imds == ImdsSettings() and cfg.deadline_s == 10.0 and dict(cfg.fact_overrides) == {}


def test_full_config_values() -> None:
    cfg = load_config(str(GOOD / "full.yaml"))
    s = cfg.settings
    # extra_services are appended; one already in services is not repeated
    assert s.services == ("ssm", "ec2messages", "ssmmessages", "kms", "logs", "ecr.api")
    assert s.fips is True and s.resolver == "10.0.0.2"
    assert (s.dns_timeout_s, s.connect_timeout_s, s.tls_timeout_s, s.api_timeout_s) == (1.0, 1.5, 300.0, 2.0)
    assert isinstance(s.dns_timeout_s, float) and cfg.deadline_s == 600.0
    assert s.egress_targets == (Target("google.com", 443), Target("example.org", 443),
                                Target("203.0.113.10", 8443), Target("www.google.com", 80))
    assert s.egress_timeout_s == 2.0
    assert (s.s3_bucket, s.s3_key, s.s3_get_object) == ("my-bucket.example-1", "path/to/object.txt", True)
    assert s.ca_bundle == str(GOOD / "ca.pem")  # relative to the config file's folder, made absolute
    assert s.check_ssm_agent is False and s.check_ec2_api is False
    assert cfg.imds == ImdsSettings(enabled=False, endpoint="http://[fd00:ec2::254]", timeout_s=0.5,
                                    connect_timeout_s=0.5)
    facts = dict(cfg.fact_overrides)
    assert facts["vpc_cidrs"] == ("10.0.0.0/16", "100.64.0.0/16") and facts["public_ipv4"] is None
    assert facts["security_group_ids"] == ("sg-0123456789abcdef0", "sg-01234567")
    assert facts["mac"] == "0e:12:34:56:78:9a" and facts["subnet_id"] == "subnet-01234567"
    assert len(facts) == 14
    with pytest.raises(TypeError):
        cfg.fact_overrides["region"] = "x"  # type: ignore[index]


def test_values_tree_holds_every_section() -> None:
    # later sections (daemon:, publish:) are read from Config.values without new plumbing
    cfg = load_config(str(GOOD / "minimal.yaml"))
    assert set(cfg.values) == set(config_mod.SCHEMA.fields)
    assert cfg.values["services"] == ("ssm",) and cfg.values["timeouts"]["dns_s"] == 2.0


def test_ipv6_endpoint_and_empty_lists() -> None:
    cfg = load_config(str(GOOD / "imds-ipv6-port.yaml"))
    assert cfg.imds.endpoint == "http://[::1]:8080"
    assert cfg.settings.egress_targets == () and cfg.settings.services == ()


def test_anchors_and_merge_keys() -> None:
    cfg = load_config(str(GOOD / "anchors-merge.yaml"))
    assert cfg.settings.egress_timeout_s == 1.0 and cfg.settings.dns_timeout_s == 1.0


def test_imds_connect_timeout_never_exceeds_read_timeout() -> None:
    assert parse_config({"imds": {"timeout_s": 0.2}}, "t").imds.connect_timeout_s == 0.2
    assert parse_config({"imds": {"timeout_s": 5}}, "t").imds.connect_timeout_s == 0.5


# --- the documented example -------------------------------------------------------------------------
def test_example_config_is_the_defaults() -> None:
    cfg = load_config(str(EXAMPLE))
    default = parse_config(None, "defaults")
    assert cfg.settings == default.settings and cfg.imds == default.imds
    assert cfg.deadline_s == default.deadline_s and dict(cfg.fact_overrides) == {}


def _uncomment_facts(text: str) -> str:
    head, rest = text.split("facts: {}\n", 1)
    block, tail = rest.split("\n# Instance metadata", 1)
    return head + "facts:\n" + re.sub(r"^#  ", "  ", block, flags=re.M) + "\n# Instance metadata" + tail


def test_example_documents_every_key(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    path = tmp_path / "example-with-facts.yaml"
    path.write_text(_uncomment_facts(text), encoding="utf-8")
    cfg = load_config(str(path))  # the commented fact examples are valid too
    assert set(cfg.fact_overrides) == set(config_mod.FACTS.fields)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))

    def keys(node: object, schema: config_mod.Section, prefix: str = "") -> List[str]:
        out = []
        for key, child in schema.fields.items():
            out.append(prefix + key)
            if isinstance(child, config_mod.Section):
                out += keys(node.get(key) or {}, child, prefix + key + ".")  # type: ignore[union-attr]
        return out

    documented = keys(data, config_mod.SCHEMA)
    present = []
    for key in documented:
        node: object = data
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) and part in node else KeyError
        if node is not KeyError:
            present.append(key)
    assert present == documented  # every schema key appears in config.example.yaml


def test_parse_config_rejects_with_the_source_name() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"timeouts": {"dns_s": False}}, "inline")
    assert str(info.value) == ("inline: timeouts.dns_s: false is a bool, not a number; "
                               "expected a number of seconds, 0 < s <= 300")


def test_ca_bundle_relative_to_cwd_without_base_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    monkeypatch.chdir(tmp_path)
    assert parse_config({"ca_bundle": "ca.pem"}, "inline").settings.ca_bundle == os.path.join(str(tmp_path),
                                                                                              "ca.pem")


# --- hostile files (issue 11: a config error must not echo the file it was pointed at) -------------
def test_a_file_that_is_not_a_config_is_described_not_echoed(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text("root:$6$c2FsdHNhbHQ$LEAKEDhashLEAKEDhash:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(shadow))
    assert "LEAKED" not in str(info.value) and "$6$" not in str(info.value)
    shadow.write_text("$6$c2FsdHNhbHQ$LEAKEDhashLEAKEDhash\n")  # a bare string document
    with pytest.raises(ConfigError) as info:
        load_config(str(shadow))
    assert "LEAKED" not in str(info.value)


def test_show_is_bounded_on_aliased_structures() -> None:
    from vpce_doctor.errors import show
    level: object = ["lol"] * 9
    for _ in range(9):  # 9**10 leaves if walked
        level = [level] * 9
    text = show(level)
    assert len(text) <= 60
    assert len(show("x" * 1_000_000)) <= 60
    assert show("a\nb\x1b") == '"a\\nb\\u001b"'
