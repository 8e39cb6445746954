"""packaging/athena/: the Athena DDL and queries over a Resource Data Sync of Custom:VpceDoctor.

What runs here (Athena itself does not):
* every .sql file is parsed by sqlglot's "athena" dialect (Hive DDL, Trino queries) as one real
  statement, not sqlglot's fallback Command, and re-parses from its own output;
* the DDL is parsed, not executed: its columns, SerDe and partitions are checked against the
  inventory contract's attributes (agent/fleet_model.py) and the sync's layout: one column per key,
  named after it in lower case, as the OpenX SerDe reads keys by default;
* the lines the sync writes from what the agent publishes have no two keys that differ only in
  case and none named like a partition, and a schema inferred from them (DuckDB's, as a crawler
  would) is the DDL's;
* root_causes.sql and since.sql are transpiled by sqlglot to DuckDB and RUN over a local copy of
  the sync's layout (one object per instance, one JSON line per entry, Hive partitions), read by
  a DuckDB view with the DDL's columns, each matched to a line's keys in lower case (as the SerDe
  does); the entries are what the agent publishes: build_inventory (agent/publishers/inventory.py)
  over real Report objects;
* on the same objects, the SQL's root causes are those `vpce-doctor fleet --from-sync DIR` names.

The layout is written by the lab's writer of it, tests/lab/aws/resource_data_sync.py (sources in
agent/fleet_sync.py and packaging/athena/README.md).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Tuple

import pytest
import duckdb  # test-only (pyproject.toml, extra "test")
import sqlglot
from sqlglot import exp

REPO = Path(__file__).resolve().parents[2]
ATHENA = REPO / "packaging" / "athena"
TYPE_NAME = "Custom:VpceDoctor"
RESOURCE_TYPE_FOLDER = "ManagedInstanceInventory"
PARTITIONS = ("accountid", "region", "resourcetype")
ACCOUNT_A, REGION_A = "111122223333", "us-east-1"
ACCOUNT_B, REGION_B = "044455556666", "eu-west-1"  # a leading zero: partitions stay text


# --- the sync's layout --------------------------------------------------------------------------

def write_sync_object(root: Path, type_name: str, account_id: str, region: str, instance_id: str,
                      item: Mapping[str, Any]) -> Path:
    """One instance's item as a Resource Data Sync (SyncFormat JsonSerDe) writes it, by the lab's
    writer of the layout (tests/lab/aws/resource_data_sync.py, which cites its sources):
    ``<type>/accountid=<a>/region=<r>/resourcetype=ManagedInstanceInventory/<instance>.json``, one
    JSON line per entry: the entry's attributes as published plus the sync's ``resourceId`` (the
    instance), ``captureTime`` and ``schemaVersion``. (The writer adds the instance's
    AWS:InstanceInformation object beside it.)"""
    from tests.lab.aws.resource_data_sync import sync_key, write_layout

    write_layout(root, [(account_id, region, instance_id, {type_name: item})])
    return root / sync_key(type_name, account_id, region, instance_id)


# --- the SQL files --------------------------------------------------------------------------------

def _text(name: str) -> str:
    return (ATHENA / name).read_text(encoding="utf-8")


def _parse_one(name: str) -> exp.Expression:
    statements = [s for s in sqlglot.parse(_text(name), read="athena") if s is not None]
    assert len(statements) == 1, f"{name}: {len(statements)} statements"
    return statements[0]


def _ddl() -> exp.Create:
    create = _parse_one("vpcedoctor_table.sql")
    assert isinstance(create, exp.Create)
    return create


def _serde_properties(create: exp.Create) -> Dict[str, str]:
    serde = create.find(exp.RowFormatSerdeProperty)
    assert serde is not None
    props = serde.args.get("serde_properties")
    return {p.this.name: p.args["value"].name for p in props.expressions} if props else {}


def _columns(create: exp.Create) -> List[str]:
    return [c.name for c in create.this.expressions]


def _partitions(create: exp.Create) -> List[str]:
    part = create.find(exp.PartitionedByProperty)
    assert part is not None
    return [c.name for c in part.this.expressions]


def test_every_sql_file_parses_as_athena_sql() -> None:
    files = sorted(ATHENA.glob("*.sql"))
    assert {f.name for f in files} >= {"vpcedoctor_table.sql", "root_causes.sql", "since.sql"}
    for path in files:
        statement = _parse_one(path.name)
        assert not isinstance(statement, exp.Command), f"{path.name}: sqlglot fell back to a Command"
        again = sqlglot.parse_one(statement.sql(dialect="athena"), read="athena")
        assert again == statement, f"{path.name} does not survive a round trip"
    assert isinstance(_parse_one("root_causes.sql"), exp.Query)
    assert isinstance(_parse_one("since.sql"), exp.Query)


SYNC_KEYS = ("resourceId", "captureTime", "schemaVersion")  # what the sync adds to every line


def test_ddl_has_a_column_for_every_contract_attribute_named_after_its_key() -> None:
    from vpce_doctor.fleet_model import ATTRIBUTES

    create = _ddl()
    assert create.args.get("kind") == "TABLE" and create.find(exp.ExternalProperty) is not None
    assert create.this.this.sql() == "ssminventory.custom_vpcedoctor"
    assert _partitions(create) == list(PARTITIONS)
    serde = create.find(exp.RowFormatSerdeProperty)
    assert serde is not None and serde.this.name == "org.openx.data.jsonserde.JsonSerDe"
    # the SerDe's default: keys lower-cased, each read by the column of that name; nothing mapped
    props = _serde_properties(create)
    assert props.get("case.insensitive", "TRUE").upper() == "TRUE"
    assert not [k for k in props if k.startswith("mapping.")]
    keys = list(SYNC_KEYS) + [name for name, _ in ATTRIBUTES]
    assert _columns(create) == [k.lower() for k in keys]
    # what makes that possible: no two keys differ only in case, and none is named like a partition
    # (the sync's resourceId and the attribute then called ResourceId did)
    assert len({k.lower() for k in keys}) == len(keys) and not {k.lower() for k in keys} & set(PARTITIONS)
    location = create.find(exp.LocationProperty)
    assert location is not None and location.this.name.endswith(f"/{TYPE_NAME}/")


def test_symptom_list_is_the_agents() -> None:
    """root_causes.sql leaves out the same 'symptom' causes as `vpce-doctor fleet`."""
    from vpce_doctor.checks.causes import SYMPTOMS

    query = _parse_one("root_causes.sql")
    lists = [node for node in query.find_all(exp.In)
             if isinstance(node.this, exp.Column) and node.this.name == "cause_code"]
    assert len(lists) == 1
    assert {e.name for e in lists[0].expressions} == set(SYMPTOMS)


# --- DuckDB over the layout -----------------------------------------------------------------------

def _pattern(create: exp.Create, root: Path) -> str:
    """The DDL's LOCATION, as a glob over the local copy of the bucket (partitions, then objects)."""
    location = create.find(exp.LocationProperty)
    assert location is not None
    folder = location.this.name.rstrip("/").rsplit("/", 1)[-1]
    return str(root / folder / "*" / "*" / "*" / "*.json").replace("'", "''")


def _view_sql(create: exp.Create, root: Path) -> str:
    """A DuckDB view with the DDL's columns read as the OpenX SerDe reads them by default: every key
    of a line lower-cased and read by the column of that name (a key no line has is NULL), and the
    Hive partitions from the path, as text. Each line's keys are unnested and pivoted back by their
    lower-cased name: nothing here knows how the agent spells them."""
    parts = ", ".join(f'"{p}"' for p in _partitions(create))
    select = [f"max(json_extract_string(json, '$.\"' || key || '\"')) FILTER (WHERE lower(key) = '{c}') AS \"{c}\""
              for c in _columns(create)]
    return (f"CREATE VIEW {create.this.this.sql(dialect='duckdb')} AS SELECT {', '.join(select)}, {parts} "
            f"FROM (SELECT line, json, unnest(json_keys(json)) AS key, {parts} "
            f"FROM (SELECT row_number() OVER () AS line, json, {parts} "
            f"FROM read_json_objects('{_pattern(create, root)}', format = 'newline_delimited', "
            f"hive_partitioning = true, hive_types_autocast = false))) "
            f"GROUP BY line, {parts}")


def _connect(root: Path) -> Any:
    con = duckdb.connect(":memory:")
    con.execute("CREATE SCHEMA ssminventory")
    con.execute(_view_sql(_ddl(), root))
    return con


def _run(con: Any, name: str, params: Sequence[str] = ()) -> List[Dict[str, Any]]:
    (sql,) = sqlglot.transpile(_text(name), read="athena", write="duckdb")
    cursor = con.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


# --- what the agents publish ----------------------------------------------------------------------

VPC_A, SUBNET_A1, SUBNET_A2 = "vpc-0a11111111111111a", "subnet-0a1111111111111a1", "subnet-0a2222222222222a2"
VPC_B, SUBNET_B1 = "vpc-0b11111111111111b", "subnet-0b1111111111111b1"
CHECKED = 1_796_256_000.0  # 2026-12-03T00:00:00Z


def _report(instance_id: str, account_id: str, region: str, vpc_id: str, subnet_id: str,
            broken: Mapping[str, Tuple[str, str]], blocked: Mapping[str, str]) -> Any:
    """The Report a daemon on this instance would make: findings with their cause texts and the
    resource explain() names (checks/resources.py), facts from IMDS, verdicts from the findings."""
    from vpce_doctor.checks.causes import explain
    from vpce_doctor.checks.model import Facts, Finding, Status
    from vpce_doctor.report import Report, verdicts

    params = {"vpc_id": vpc_id, "subnet_id": subnet_id, "region": region, "instance_id": instance_id,
              "service": "ssm", "host": f"ssm.{region}.amazonaws.com"}
    findings = []
    for check_id in ("imds", "resolver", "dns.ssm", "reach.ssm.10.0.1.101", "s3.route", "clock"):
        if check_id in blocked:
            blocker = next(f for f in findings if f.id == blocked[check_id])
            findings.append(Finding(check_id, Status.UNKNOWN, f"not run: blocked by {blocker.id}",
                                    cause_code=blocker.cause_code, cause=f"blocked by {blocker.id}: {blocker.cause}",
                                    fix=blocker.fix, blocked_by=blocker.id))
            continue
        status, code = broken.get(check_id, ("OK", ""))
        text = explain(code, **params) if code else {}
        findings.append(Finding(check_id, Status[status], f"{check_id}: {status.lower()}", cause_code=code or None,
                                cause=text.get("cause"), fix=text.get("fix"), evidence={"vpc_id": vpc_id},
                                resource=text.get("resource")))
    facts = Facts(region=region, instance_id=instance_id, vpc_id=vpc_id, subnet_id=subnet_id,
                  security_group_ids=("sg-0c11111111111111c",),
                  instance_profile_arn=f"arn:aws:iam::{account_id}:instance-profile/private-ssm",
                  account_id=account_id)
    return Report(tuple(findings), facts, tuple(verdicts(findings)), CHECKED, 0.5)


def _publish(root: Path, account_id: str, region: str, instance_id: str, report: Any) -> List[Dict[str, str]]:
    from vpce_doctor.publishers.inventory import build_inventory

    item = build_inventory(report, TYPE_NAME, "Custom:VpceDoctorVerdict").items[0].api()
    write_sync_object(root, TYPE_NAME, account_id, region, instance_id, item)
    return item["Content"]


DNS_OFF = {"dns.ssm": ("CRITICAL", "dns_support_disabled")}
ROUTE_MISSING = {"s3.route": ("CRITICAL", "s3_route_missing")}
CLOCK = {"clock": ("CRITICAL", "clock_skew")}
# A blocked finding carries its blocker's cause: it must not count twice.
BLOCKED_BY_DNS = {"reach.ssm.10.0.1.101": "dns.ssm"}

# (instance, account, region, vpc, subnet, broken, blocked)
FLEET = (
    ("i-0a00000000000001", ACCOUNT_A, REGION_A, VPC_A, SUBNET_A1, DNS_OFF, BLOCKED_BY_DNS),
    ("i-0a00000000000002", ACCOUNT_A, REGION_A, VPC_A, SUBNET_A1, DNS_OFF, BLOCKED_BY_DNS),
    ("i-0a00000000000003", ACCOUNT_A, REGION_A, VPC_A, SUBNET_A2, DNS_OFF, {}),
    ("i-0a00000000000004", ACCOUNT_A, REGION_A, VPC_A, SUBNET_A2, {}, {}),
    ("i-0b00000000000001", ACCOUNT_B, REGION_B, VPC_B, SUBNET_B1, ROUTE_MISSING, {}),
    ("i-0b00000000000002", ACCOUNT_B, REGION_B, VPC_B, SUBNET_B1, ROUTE_MISSING, {}),
    ("i-0b00000000000003", ACCOUNT_B, REGION_B, VPC_B, SUBNET_B1, CLOCK, {}),
    ("i-0b00000000000004", ACCOUNT_B, REGION_B, VPC_B, SUBNET_B1, {}, {}),
)
# What the inventory contract says those causes point at: the VPC (its DNS attribute) and the subnet's route
# table (its id unknown to an instance without the EC2 API: the subnet id stands for it).
EXPECTED_ROOTS = {
    (ACCOUNT_A, REGION_A, "vpc", VPC_A): 3,
    (ACCOUNT_B, REGION_B, "route-table", SUBNET_B1): 2,
}


def _published_fleet(root: Path) -> Dict[str, List[Dict[str, str]]]:
    return {iid: _publish(root, account, region, iid, _report(iid, account, region, vpc, subnet, broken, blocked))
            for iid, account, region, vpc, subnet, broken, blocked in FLEET}


def test_root_causes_over_what_build_inventory_publishes(tmp_path: Path) -> None:
    published = _published_fleet(tmp_path)
    planted = {e["CheckId"]: e for e in published["i-0a00000000000001"]}
    assert "CauseResourceType" in planted["dns.ssm"], (
        "build_inventory does not publish the inventory contract's context attributes (CauseResourceType, …)")
    assert (planted["dns.ssm"]["CauseResourceType"], planted["dns.ssm"]["CauseResourceId"]) == ("vpc", VPC_A)
    assert (planted["dns.ssm"]["AwsAccountId"], planted["dns.ssm"]["AwsRegion"]) == (ACCOUNT_A, REGION_A)
    assert planted["reach.ssm.10.0.1.101"]["BlockedBy"] == "dns.ssm"
    # the layout: one object per instance under the type's folder and the three partitions
    objects = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / TYPE_NAME).rglob("*.json"))
    assert len(objects) == len(FLEET)
    assert objects[0] == (f"{TYPE_NAME}/accountid={ACCOUNT_B}/region={REGION_B}/"
                          f"resourcetype=ManagedInstanceInventory/i-0b00000000000001.json")

    rows = _run(_connect(tmp_path), "root_causes.sql")
    roots = [r for r in rows if r["kind"] == "resource"]
    assert {(r["accountid"], r["region"], r["resource_type"], r["resource_id"]): r["instance_count"]
            for r in roots} == EXPECTED_ROOTS
    assert [r["resource_id"] for r in roots] == [VPC_A, SUBNET_B1], "most instances first"
    vpc = roots[0]
    assert vpc["status"] == "CRITICAL" and vpc["cause_codes"] == "dns_support_disabled"
    assert list(vpc["instances_sample"]) == ["i-0a00000000000001", "i-0a00000000000002", "i-0a00000000000003"]
    assert list(vpc["vpcs"]) == [VPC_A] and list(vpc["subnets"]) == [SUBNET_A1, SUBNET_A2]
    assert VPC_A in vpc["fix"] and vpc["first_since"] == "2026-12-03T00:00:00Z"
    # then the instance whose failure shares no resource
    own = [r for r in rows if r["kind"] == "instance"]
    assert [(r["resource_id"], r["cause_codes"], r["status"]) for r in own] == [
        ("i-0b00000000000003", "clock_skew", "CRITICAL")]
    assert rows[-1]["kind"] == "instance", "root causes first"


# --- the semantics on entries of the inventory contract's shape ---------------------------------------------

VPC_1, SUBNET_1, SUBNET_2 = "vpc-0c000000000000001", "subnet-0c000000000000001", "subnet-0c000000000000002"
SG_ID = "sg-0e000000000000001"


def iid(n: int) -> str:
    return f"i-{n:017x}"

def _entry(check_id: str, status: str, **attrs: str) -> Dict[str, str]:
    from vpce_doctor.fleet_model import ATTRIBUTES

    entry = {name: "" for name, _ in ATTRIBUTES}
    # a steady state unless said otherwise: in this status since before every window below
    entry.update(CheckId=check_id, Status=status, CheckedAt="2026-12-03T10:00:00Z", AgentVersion="0.2.0",
                 StatusSince="2026-12-01T00:00:00Z", PreviousStatus="OK")
    entry.update(attrs)
    return entry


def _item(entries: Iterable[Dict[str, str]]) -> Dict[str, Any]:
    return {"TypeName": TYPE_NAME, "SchemaVersion": "1.0", "CaptureTime": "2026-12-03T10:00:00Z",
            "Content": list(entries)}


SG = {"CauseResourceType": "security-group", "CauseResourceId": SG_ID, "CauseCode": "endpoint_sg_no_inbound_443",
      "Fix": f"aws ec2 authorize-security-group-ingress --group-id {SG_ID} --protocol tcp --port 443 --cidr <cidr>"}
SG_FULL_FIX = (f"aws ec2 authorize-security-group-ingress --group-id {SG_ID} --protocol tcp --port 443 "
               "--cidr 10.0.0.0/16")


def _contract_fleet(root: Path) -> None:
    def put(account: str, region: str, iid: str, *entries: Dict[str, str]) -> None:
        write_sync_object(root, TYPE_NAME, account, region, iid, _item(entries))

    # one security group, two ENIs each, on two instances in two subnets: 2 instances, not 4 findings
    for n, subnet in ((1, SUBNET_1), (2, SUBNET_2)):
        put(ACCOUNT_A, REGION_A, iid(n),
            _entry(f"reach.ssm.10.0.1.{n}", "CRITICAL", VpcId=VPC_1, SubnetId=subnet,
                   StatusSince=f"2026-12-03T0{n}:00:00Z", PreviousStatus="OK", **SG),
            _entry(f"reach.ssm.10.0.2.{n}", "CRITICAL", VpcId=VPC_1, SubnetId=subnet,
                   StatusSince=f"2026-12-03T0{n}:00:00Z", **SG),
            _entry("session.path", "CRITICAL", BlockedBy=f"reach.ssm.10.0.1.{n}", **SG),
            _entry("resolver", "OK"))
    # the same sg id in another account is another resource; its fix names every id
    put(ACCOUNT_B, REGION_A, iid(3),
        _entry("reach.ssm.10.0.1.3", "WARNING", VpcId="vpc-9", **{**SG, "Fix": SG_FULL_FIX}))
    # an agent-local cause, and a symptom next to it (the symptom is not listed)
    put(ACCOUNT_A, REGION_A, iid(4),
        _entry("clock", "CRITICAL", CauseResourceType="instance", CauseResourceId=iid(4), CauseCode="clock_skew",
               StatusSince="2026-12-03T05:00:00Z", PreviousStatus="OK"),
        _entry("ssm.agent", "WARNING", CauseCode="ssm_agent_endpoints_failing"))
    # only a symptom: the instance's own to explain
    put(ACCOUNT_A, REGION_A, iid(5), _entry("ssm.agent", "WARNING", CauseCode="ssm_agent_endpoints_failing"))
    # a symptom next to a shared cause: not listed under the instance
    put(ACCOUNT_A, REGION_A, iid(6),
        _entry("dns.ssm", "CRITICAL", CauseResourceType="vpc", CauseResourceId=VPC_1, CauseCode="dns_support_disabled",
               StatusSince="2026-12-02T23:00:00Z", PreviousStatus=""),
        _entry("ssm.agent", "WARNING", CauseCode="ssm_agent_endpoints_failing"))
    # an older agent: the nine attributes only (no resource): its failures share no resource
    old = {k: v for k, v in _entry("dns.ssm", "CRITICAL", CauseCode="private_dns_disabled").items()
           if k in ("CheckId", "Status", "Summary", "Cause", "CauseCode", "Fix", "Evidence", "CheckedAt",
                    "AgentVersion")}
    put(ACCOUNT_A, REGION_A, iid(7), old)
    # recovered in the window: OK now, failing before (an OK finding names no resource)
    put(ACCOUNT_A, REGION_A, iid(8),
        _entry("s3.route", "OK", StatusSince="2026-12-03T06:00:00Z", PreviousStatus="CRITICAL"),
        _entry("dns.ssm", "CRITICAL", CauseResourceType="vpc", CauseResourceId=VPC_1, CauseCode="dns_support_disabled",
               StatusSince="2026-12-03T07:00:00Z", PreviousStatus="WARNING"))
    # healthy
    put(ACCOUNT_B, REGION_B, iid(9), _entry("resolver", "OK"))


def test_root_causes_group_by_resource_per_account_and_region(tmp_path: Path) -> None:
    _contract_fleet(tmp_path)
    rows = _run(_connect(tmp_path), "root_causes.sql")
    got = [(r["kind"], r["accountid"], r["resource_type"], r["resource_id"], r["instance_count"], r["status"])
           for r in rows]
    assert got == [
        ("resource", ACCOUNT_A, "security-group", SG_ID, 2, "CRITICAL"),
        ("resource", ACCOUNT_A, "vpc", VPC_1, 2, "CRITICAL"),
        ("resource", ACCOUNT_B, "security-group", SG_ID, 1, "WARNING"),
        ("instance", ACCOUNT_A, "instance", iid(4), 1, "CRITICAL"),
        ("instance", ACCOUNT_A, "instance", iid(7), 1, "CRITICAL"),
        ("instance", ACCOUNT_A, "instance", iid(5), 1, "WARNING"),
    ]
    sg = rows[0]
    assert list(sg["subnets"]) == [SUBNET_1, SUBNET_2] and sg["first_since"] == "2026-12-03T01:00:00Z"
    assert rows[2]["fix"] == SG_FULL_FIX
    assert [r["cause_codes"] for r in rows[3:]] == ["clock_skew", "private_dns_disabled", "ssm_agent_endpoints_failing"]


def test_since_tells_what_broke_and_recovered_in_the_window(tmp_path: Path) -> None:
    _contract_fleet(tmp_path)
    con = _connect(tmp_path)
    rows = _run(con, "since.sql", ("2026-12-03T00:00:00Z", "2026-12-03T06:30:00Z"))
    got = [(r["change"], r["resource_type"], r["resource_id"], r["instance_count"], r["first_since"]) for r in rows]
    assert got == [
        ("broke", "security-group", SG_ID, 2, "2026-12-03T01:00:00Z"),
        ("broke", "instance", iid(4), 1, "2026-12-03T05:00:00Z"),
        ("recovered", "instance", iid(8), 1, "2026-12-03T06:00:00Z"),
    ]
    assert list(rows[0]["instances_sample"]) == [iid(1), iid(2)] and list(rows[0]["checks"]) == [
        "reach.ssm.10.0.1.1", "reach.ssm.10.0.1.2", "reach.ssm.10.0.2.1", "reach.ssm.10.0.2.2"]
    # a later window: WARNING -> CRITICAL on the VPC, and the first-seen failure before midnight is outside
    later = _run(con, "since.sql", ("2026-12-03T06:30:00Z", "2026-12-04T00:00:00Z"))
    assert [(r["change"], r["resource_type"], r["resource_id"]) for r in later] == [("worse", "vpc", VPC_1)]
    before = _run(con, "since.sql", ("2026-12-02T00:00:00Z", "2026-12-03T00:00:00Z"))
    assert [(r["change"], r["resource_id"], r["instance_count"]) for r in before] == [("broke", VPC_1, 1)]


def test_the_syncs_keys_and_the_agents_are_read_apart(tmp_path: Path) -> None:
    """The sync's resourceId (the instance) and its partitions are never the agent's CauseResourceId,
    CauseResourceType, AwsAccountId, AwsRegion (the names that once collided with them); each
    mixed-case key is read by its lower-cased name, as the SerDe reads it."""
    write_sync_object(tmp_path, TYPE_NAME, ACCOUNT_A, REGION_A, iid(1),
                      _item([_entry("dns.ssm", "CRITICAL", CauseResourceType="vpc", CauseResourceId=VPC_1,
                                    CauseCode="dns_support_disabled", AwsAccountId="", AwsRegion="eu-north-1")]))
    row = _connect(tmp_path).execute(
        "SELECT resourceid, causeresourceid, resourcetype, causeresourcetype, accountid, awsaccountid, region, "
        "awsregion, checkid FROM ssminventory.custom_vpcedoctor").fetchall()
    assert row == [(iid(1), VPC_1, RESOURCE_TYPE_FOLDER, "vpc", ACCOUNT_A, "", REGION_A, "eu-north-1", "dns.ssm")]


def test_every_line_fits_the_ddl_without_a_mapping(tmp_path: Path) -> None:
    """On the lines the sync writes from what build_inventory publishes: no two keys differ only in
    case (the SerDe refuses a line whose lower-cased keys repeat) and none is a partition's name, and
    the schema DuckDB infers from the objects (as a Glue crawler would: a column per key, partitions
    from the path) has exactly the DDL's columns and partitions."""
    _published_fleet(tmp_path)
    create = _ddl()
    columns = _columns(create)
    lines = [json.loads(line) for path in sorted((tmp_path / TYPE_NAME).rglob("*.json"))
             for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 6 * len(FLEET)
    for line in lines:
        lowered = [key.lower() for key in line]
        assert len(set(lowered)) == len(lowered) and not set(lowered) & set(PARTITIONS), sorted(line)
        assert sorted(lowered) == sorted(columns), "build_inventory publishes every attribute on every entry"
    inferred = duckdb.connect(":memory:").execute(
        f"DESCRIBE SELECT * FROM read_json('{_pattern(create, tmp_path)}', format = 'newline_delimited', "
        f"hive_partitioning = true)").fetchall()
    assert sorted(str(row[0]).lower() for row in inferred) == sorted(columns + _partitions(create))



# --- the policies ---------------------------------------------------------------------------------

# IAM names of the S3 actions used (they are not all API operation names: s3:ListBucket is
# ListObjects(V2), s3:ListMultipartUploadParts is ListParts).
_S3_ACTIONS = {"GetBucketAcl", "PutObject", "PutObjectTagging", "GetObject", "GetBucketLocation", "ListBucket",
               "AbortMultipartUpload", "ListMultipartUploadParts"}


def test_policies_are_json_with_actions_the_services_have() -> None:
    import botocore.session

    session = botocore.session.get_session()
    for path in sorted(ATHENA.glob("*.json")):
        policy = json.loads(path.read_text(encoding="utf-8"))
        assert policy["Version"] == "2012-10-17", path.name
        for statement in policy["Statement"]:
            actions = statement["Action"]
            for action in [actions] if isinstance(actions, str) else actions:
                service, name = action.split(":")
                if service == "s3":
                    assert name in _S3_ACTIONS, f"{path.name}: {action}"
                else:
                    model = session.get_service_model(service)
                    assert name in model.operation_names, f"{path.name}: {action}"
    # the sync writes under <prefix>/<type>/accountid=<account>/…: the policies grant exactly that
    for name in ("bucket-policy.json", "bucket-policy-organization.json"):
        statements = json.loads((ATHENA / name).read_text(encoding="utf-8"))["Statement"]
        put = next(s for s in statements if s["Action"] == "s3:PutObject")
        assert put["Principal"] == {"Service": "ssm.amazonaws.com"}
        assert all(re.search(r"/bucket-prefix/\*/accountid=[0-9*]+/\*$", r) for r in put["Resource"])
        assert put["Condition"]["StringEquals"]["s3:x-amz-acl"] == "bucket-owner-full-control"


# --- the same answer as `vpce-doctor fleet --from-sync` -------------------------------------------

def _fleet_json(root: Path, capsys: Any) -> Dict[str, Any]:
    from vpce_doctor.cli import main

    capsys.readouterr()
    code = main(["fleet", "--from-sync", str(root), "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == doc["exit_code"]
    return doc


@pytest.mark.parametrize("fleet", ["build_inventory", "contract"])
def test_sql_and_fleet_from_sync_name_the_same_root_causes(tmp_path: Path, capsys: Any, fleet: str) -> None:
    """The Athena path and the agent's own reader of the layout (agent/fleet_sync.py,
    agent/fleet_correlate.py) agree on the same objects: the same resources with the same instance
    counts, and the same instances whose failures share no resource."""
    _published_fleet(tmp_path) if fleet == "build_inventory" else _contract_fleet(tmp_path)
    rows = _run(_connect(tmp_path), "root_causes.sql")
    doc = _fleet_json(tmp_path, capsys)
    assert {(r["accountid"], r["region"], r["resource_type"], r["resource_id"]): r["instance_count"]
            for r in rows if r["kind"] == "resource"} == {
        (g["account_id"], g["region"], g["resource_type"], g["resource_id"]): g["instance_count"]
        for g in doc["root_causes"]}
    assert sorted((r["accountid"], r["resource_id"]) for r in rows if r["kind"] == "instance") == sorted(
        (u["account_id"], u["instance_id"]) for u in doc["unshared"])
