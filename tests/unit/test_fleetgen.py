"""The generated test fleet (tests/lab/fleetgen.py): its ground truth is what the agent's own resource
attribution says, its noise shares no resource, and its published items have the shapes that the fleet
reader must cope with."""
from __future__ import annotations

import calendar
import time
from collections import defaultdict
from typing import Any, Dict, Set, Tuple

import pytest

from tests.lab import fleetgen
from vpce_doctor.checks.causes import SYMPTOMS

Key = Tuple[str, str, str, str]


@pytest.fixture(scope="module")
def fleet() -> fleetgen.Fleet:
    return fleetgen.generate(1200, seed=11)


def _resources(fleet: fleetgen.Fleet) -> Dict[Key, Set[str]]:
    """(account, region, resource type, id) -> instances, from the failing findings that are root causes
    (not blocked by another, not a symptom) — as the fleet correlation groups them."""
    out: Dict[Key, Set[str]] = defaultdict(set)
    for inst in fleet.instances:
        if not inst.publishes:
            continue
        for f in fleet.findings(inst):
            if f.status.name != "OK" and not f.blocked_by and f.cause_code not in SYMPTOMS:
                r = f.resource or {}
                out[(inst.account_id, inst.region, r.get("type", ""), r.get("id", ""))].add(inst.instance_id)
    return out


def test_the_agents_resource_attribution_finds_exactly_the_planted_faults(fleet: fleetgen.Fleet) -> None:
    found = _resources(fleet)
    shared = {k: v for k, v in found.items() if k[2] != "instance"}
    planted = {(f.account_id, f.region, f.resource_type, f.resource_id): set(f.instance_ids) for f in fleet.faults}
    assert shared == planted
    assert sorted(f.name for f in fleet.faults) == sorted(fleetgen.FAULTS)
    assert all(len(f.instance_ids) >= 10 for f in fleet.faults)
    # Everything else that fails is local to one instance, on the instances given a local fault.
    local = {k[3] for k in found if k[2] == "instance"}
    assert local == {i.instance_id for i in fleet.instances if i.noise.startswith("local:")}


def test_faults_sit_on_the_instances_that_share_the_resource(fleet: fleetgen.Fleet) -> None:
    by_name = {f.name: f for f in fleet.faults}
    hit = {name: set(f.instance_ids) for name, f in by_name.items()}
    insts = fleet.instances
    eni_vpc = next(i.vpc for i in insts if i.fault == "eni")
    assert hit["eni"] == {i.instance_id for i in insts if i.vpc is eni_vpc}
    rtb = by_name["route_table"].resource_id
    assert hit["route_table"] == {i.instance_id for i in insts if i.subnet.route_table_id == rtb}
    assert len({i.subnet.subnet_id for i in insts if i.instance_id in hit["route_table"]}) == 2  # a shared table
    sg = by_name["security_group"].resource_id
    assert hit["security_group"] == {i.instance_id for i in insts if i.sg_id == sg}
    role = by_name["role"]
    assert hit["role"] == {i.instance_id for i in insts
                           if i.role == role.resource_id and i.account_id == role.account_id}
    assert not set.intersection(*hit.values())
    assert not any(i.noise for i in insts if i.fault)


def test_noise_has_the_shapes_the_reader_must_cope_with(fleet: fleetgen.Fleet) -> None:
    kinds: Dict[str, Any] = defaultdict(list)
    for inst in fleet.instances:
        kinds[inst.noise.split(":")[0]].append(inst)
    n = len(fleet.instances)
    assert len(kinds["local"]) == n // 100 and len(kinds["stale"]) == n // 100
    assert len(kinds["silent"]) == n // 200 and len(kinds["old_agent"]) == n // 100 and kinds["terminated"]
    for inst in kinds["silent"] + kinds["terminated"]:
        assert fleet.items(inst) == {}
    status = {inst.instance_id: fleet.instance_information(inst)["Content"][0]["InstanceStatus"]
              for inst in fleet.instances}
    assert {i for i, s in status.items() if s == "Terminated"} == {i.instance_id for i in kinds["terminated"]}
    for inst in kinds["stale"]:
        capture = fleet.items(inst)[fleetgen.TYPE_NAME]["CaptureTime"]
        assert fleet.now - calendar.timegm(time.strptime(capture, "%Y-%m-%dT%H:%M:%SZ")) == fleetgen.STALE_S
    for inst in kinds["old_agent"]:
        entries = fleet.items(inst)[fleetgen.TYPE_NAME]["Content"]
        assert all(tuple(e) == fleetgen.OLD_ATTRIBUTES and e["AgentVersion"] == fleetgen.OLD_AGENT_VERSION
                   for e in entries)
    current = fleet.items(kinds[""][0])[fleetgen.TYPE_NAME]["Content"]
    assert set(fleetgen.OLD_ATTRIBUTES) <= set(current[0]) and current[0]["AgentVersion"] != fleetgen.OLD_AGENT_VERSION


def test_published_entries_carry_the_resource_when_the_publisher_does(fleet: fleetgen.Fleet) -> None:
    """Once build_inventory publishes CauseResourceType/CauseResourceId (the contract), the entries say
    what the findings say; the content is the agent's, so this is checked, not assumed."""
    for fault in fleet.faults:
        inst = next(i for i in fleet.instances if i.instance_id == fault.instance_ids[0])
        entries = fleet.items(inst)[fleetgen.TYPE_NAME]["Content"]
        if "CauseResourceType" not in entries[0]:
            pytest.skip("this build_inventory does not publish CauseResourceType yet")
        pointing = {(e["CauseResourceType"], e["CauseResourceId"]) for e in entries
                    if e["Status"] != "OK" and not e.get("BlockedBy")}
        assert (fault.resource_type, fault.resource_id) in pointing


def test_records_seed_and_generation_are_deterministic() -> None:
    a, b = fleetgen.generate(300, seed=5, now=1_800_000_000), fleetgen.generate(300, seed=5, now=1_800_000_000)
    assert list(a.seed_lines()) == list(b.seed_lines())
    records = list(a.records())
    assert [r[2] for r in records] == [i.instance_id for i in a.instances]
    assert len({r[2] for r in records}) == 300
    assert {(r[0], r[1]) for r in records} == {(acc, reg) for acc in fleetgen.ACCOUNTS for reg in fleetgen.REGIONS}
    synced = list(a.sync_records())
    assert [r[:3] for r in synced] == [r[:3] for r in records]
    for (_, _, iid, items), (_, _, _, plain) in zip(synced, records):
        assert items["AWS:InstanceInformation"]["Content"][0]["InstanceId"] == iid
        assert {k: v for k, v in items.items() if k != "AWS:InstanceInformation"} == plain
