"""The loopback SSM fleet stand-in (tests/lab/aws/ssm_fleet_standin.py): real HTTPS on 127.0.0.1, real
boto3 clients. Routing by access key and region, SSM's authentication and throttling errors,
GetInventory pagination over 10,000 instances of one partition, and `vpce-doctor fleet` over the
generated 10,000-instance fleet (tests/lab/fleetgen.py) naming exactly its 5 planted resources."""
from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from botocore.exceptions import ClientError

from tests.lab import fleetgen
from tests.lab.aws.ssm_fleet_standin import Account, FleetStandin, TokenBucket

pytest.importorskip("trustme")

ALICE = Account("AKIAFLEETALICE000001", "111111111111", "alice-secret")
BOB = Account("AKIAFLEETBOB00000002", "222222222222", "bob-secret")
BIG_PARTITION = ("111111111111", "ap-northeast-1")  # a region of its own: only these
BIG = 10_000
TYPE = fleetgen.TYPE_NAME
VERDICTS = fleetgen.VERDICT_TYPE_NAME
ALL_STATUSES = ["OK", "WARNING", "CRITICAL", "UNKNOWN"]
PUBLISHED = {"Filters": [{"Key": f"{TYPE}.Status", "Values": ALL_STATUSES, "Type": "Equal"}],
             "ResultAttributes": [{"TypeName": TYPE}]}
MANAGED = {"Filters": [{"Key": "AWS:InstanceInformation.InstanceStatus", "Values": ["Terminated"], "Type": "NotEqual"}],
           "ResultAttributes": [{"TypeName": "AWS:InstanceInformation"}]}


def _seed(tmp: Path) -> Tuple[Path, fleetgen.Fleet, List[str]]:
    """A small generated fleet (every partition) plus BIG instances in BIG_PARTITION, each publishing
    the verdicts a healthy instance of the fleet publishes (made by the agent's code; the verdict type
    only, so 10,000 of them load and page quickly), every 100th one silent."""
    fleet = fleetgen.generate(120, seed=7)
    healthy = next(i for i in fleet.instances if not i.fault and not i.noise)
    items = {VERDICTS: fleet.items(healthy)[VERDICTS]}
    path = tmp / "seed.jsonl"
    big_ids = [f"i-0{n:016x}" for n in range(1, BIG + 1)]
    with path.open("w") as out:
        for line in fleet.seed_lines():
            out.write(line + "\n")
        for n, iid in enumerate(big_ids):
            out.write(json.dumps({"account_id": BIG_PARTITION[0], "region": BIG_PARTITION[1], "instance_id": iid,
                                  "ip": "10.9.0.1", "items": {} if n % 100 == 99 else items}) + "\n")
    return path, fleet, big_ids


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[FleetStandin, fleetgen.Fleet, List[str]]]:
    tmp = tmp_path_factory.mktemp("standin")
    seed, fleet, big_ids = _seed(tmp)
    proc = FleetStandin(tmp, seed, [ALICE, BOB])
    try:
        proc.wait_ready(120)
        yield proc, fleet, big_ids
    finally:
        proc.stop()


def _all_pages(client: Any, request: Dict[str, Any]) -> Tuple[List[str], int]:
    ids: List[str] = []
    pages = 0
    token = None
    while True:
        reply = client.get_inventory(MaxResults=50, **request, **({"NextToken": token} if token else {}))
        pages += 1
        ids += [e["Id"] for e in reply["Entities"]]
        token = reply.get("NextToken")
        if not token:
            return ids, pages
        assert pages < 1000, "pagination does not end"


def test_pagination_over_10000_instances_returns_each_once(standin: Any) -> None:
    proc, _, big_ids = standin
    client = proc.client(ALICE, BIG_PARTITION[1])
    started, cpu = time.monotonic(), time.process_time()
    ids, pages = _all_pages(client, {"Filters": [{"Key": f"{VERDICTS}.Status", "Values": ["works"], "Type": "Equal"}],
                                     "ResultAttributes": [{"TypeName": VERDICTS}]})
    wall = time.monotonic() - started
    publishing = [iid for n, iid in enumerate(big_ids) if n % 100 != 99]
    assert len(ids) == len(set(ids)) == len(publishing) and set(ids) == set(publishing)
    assert pages == -(-len(publishing) // 50)
    print(f"\nGetInventory over loopback HTTPS: {pages} pages of 50 in {wall:.2f} s = {pages / wall:.0f} pages/s "
          f"(client CPU {time.process_time() - cpu:.2f} s)")
    managed, _ = _all_pages(client, MANAGED)  # silent ones are managed too
    assert sorted(managed) == sorted(big_ids)


def test_routes_by_access_key_and_credential_scope_region(standin: Any) -> None:
    proc, fleet, _ = standin
    for account in (ALICE, BOB):
        for region in fleetgen.REGIONS:
            ids, _ = _all_pages(proc.client(account, region), MANAGED)
            expected = {i.instance_id for i in fleet.instances if i.account_id == account.account_id
                        and i.region == region and i.noise != "terminated"}
            assert expected and set(ids) == expected, (account.account_id, region)
            published, _ = _all_pages(proc.client(account, region), PUBLISHED)
            assert set(published) == {i.instance_id for i in fleet.instances if i.account_id == account.account_id
                                      and i.region == region and i.publishes}
    # A region nothing was seeded in answers empty, as SSM's does.
    assert _all_pages(proc.client(BOB, "sa-east-1"), MANAGED) == ([], 1)


def test_terminated_instances_show_their_status(standin: Any) -> None:
    proc, fleet, _ = standin
    gone = [i for i in fleet.instances if i.noise == "terminated"]
    assert gone
    inst = gone[0]
    account = ALICE if inst.account_id == ALICE.account_id else BOB
    reply = proc.client(account, inst.region).get_inventory(
        Filters=[{"Key": "AWS:InstanceInformation.InstanceId", "Values": [inst.instance_id], "Type": "Equal"}])
    [entity] = reply["Entities"]
    assert entity["Data"]["AWS:InstanceInformation"]["Content"][0]["InstanceStatus"] == "Terminated"
    assert entity["Data"]["AWS:InstanceInformation"] == fleet.instance_information(inst) | {
        "CaptureTime": entity["Data"]["AWS:InstanceInformation"]["CaptureTime"]}


def _error(call: Any) -> Tuple[int, str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    err = caught.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"], err["Error"]["Message"]


def test_unknown_key_wrong_secret_and_unsigned_get_ssms_errors(standin: Any) -> None:
    proc, _, _ = standin
    stranger = Account("AKIAFLEETSTRANGER003", "333333333333")
    assert _error(lambda: proc.client(stranger, "us-east-1").get_inventory()) == (
        400, "UnrecognizedClientException", "The security token included in the request is invalid.")
    assert _error(lambda: proc.client(ALICE, "us-east-1", secret="not-alices").get_inventory()) == (
        400, "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
        "Access Key and signing method. Consult the service documentation for details.")
    request = urllib.request.Request(proc.url + "/", data=b"{}", method="POST",
                                     headers={"X-Amz-Target": "AmazonSSM.GetInventory",
                                              "Content-Type": "application/x-amz-json-1.1"})
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(request, context=ssl.create_default_context(cafile=str(proc.ca)), timeout=10)
    assert unsigned.value.code in (400, 403)  # SSM's status for it is not documented (see the module)
    assert json.loads(unsigned.value.read())["__type"] == "MissingAuthenticationTokenException"
    # The right secret still works, and the inventory service's own validation answers through it.
    assert _error(lambda: proc.client(ALICE, "us-east-1").get_inventory(MaxResults=51))[:2] == (
        400, "ValidationException")


def test_throttles_per_account_region_and_operation_with_ssms_error(tmp_path: Path) -> None:
    fleet = fleetgen.generate(12, seed=3)
    seed = fleet.write_seed(tmp_path / "seed.jsonl")
    # A refill this slow adds no token during the test: the counts below do not depend on timing.
    proc = FleetStandin(tmp_path, seed, [ALICE, BOB], rate=0.0001, burst=5)
    try:
        proc.wait_ready(120)
        client = proc.client(ALICE, "us-east-1")
        outcomes: List[Any] = []
        for _ in range(12):
            try:
                client.get_inventory(MaxResults=5)
                outcomes.append("ok")
            except ClientError as exc:
                r = exc.response
                outcomes.append((r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"], r["Error"]["Message"]))
        assert outcomes == ["ok"] * 5 + [(400, "ThrottlingException", "Rate exceeded")] * 7
        # Other buckets are untouched: another operation, another region, another account.
        inst = next(i for i in fleet.instances if i.account_id == ALICE.account_id and i.region == "us-east-1")
        client.list_inventory_entries(InstanceId=inst.instance_id, TypeName=TYPE)
        proc.client(ALICE, "eu-west-1").get_inventory()
        proc.client(BOB, "us-east-1").get_inventory()
        stats = proc.stats()
        assert stats["requests"] == 15 and stats["throttled"] == 7
        assert stats["partitions"]["111111111111/us-east-1/GetInventory"] == {"requests": 12, "throttled": 7,
                                                                              "errors": 0}
        assert stats["partitions"]["111111111111/us-east-1/ListInventoryEntries"]["throttled"] == 0
    finally:
        final = proc.stop()
    assert final is not None and final["throttled"] == 7


def test_token_bucket_admits_burst_then_exactly_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=8.0, burst=3, clock=lambda: now[0])
    admitted = 0
    for tick in range(1280):  # 128 calls a second for 10 s against 8/s with a burst of 3 (exact binary steps)
        now[0] = tick / 128
        admitted += bucket.take()
    # The burst, then 8 a second over the 1279/128 s that follow: floor(3 + 8 * 1279 / 128) = 82.
    assert admitted == 82


def test_get_inventory_cache_follows_every_change() -> None:
    """inventory.py caches GetInventory's filtered entities per query: a put or a registration must
    show in the next page as it did before the cache."""
    from tests.lab.aws.inventory import InventoryService, ManagedInstance

    service = InventoryService("111111111111")
    service.register([ManagedInstance("i-0000000000000000a"), ManagedInstance("i-0000000000000000b")])
    item = {"TypeName": TYPE, "SchemaVersion": "1.0", "CaptureTime": "2026-12-03T10:00:00Z",
            "Content": [{"CheckId": "dns.ssm", "Status": "OK"}]}
    service.handle("PutInventory", {"InstanceId": "i-0000000000000000a", "Items": [item]})
    critical = {"Filters": [{"Key": f"{TYPE}.Status", "Values": ["CRITICAL"], "Type": "Equal"}],
                "ResultAttributes": [{"TypeName": TYPE}]}
    assert service.handle("GetInventory", critical)["Entities"] == []
    broken = dict(item, Content=[{"CheckId": "dns.ssm", "Status": "CRITICAL"}])
    service.handle("PutInventory", {"InstanceId": "i-0000000000000000b", "Items": [broken]})
    assert [e["Id"] for e in service.handle("GetInventory", critical)["Entities"]] == ["i-0000000000000000b"]
    managed = service.handle("GetInventory", {})["Entities"]
    service.register([ManagedInstance("i-0000000000000000c")])
    assert len(service.handle("GetInventory", {})["Entities"]) == len(managed) + 1
    # A page token from before a change still pages the same query (the fingerprint, not the data).
    first = service.handle("GetInventory", {"MaxResults": 1})
    service.handle("PutInventory", {"InstanceId": "i-0000000000000000a", "Items": [broken]})
    rest = service.handle("GetInventory", {"MaxResults": 5, "NextToken": first["NextToken"]})
    assert [e["Id"] for e in first["Entities"] + rest["Entities"]] == [
        "i-0000000000000000a", "i-0000000000000000b", "i-0000000000000000c"]


# The end-to-end check (`vpce-doctor fleet` over the 10,000-instance fleet through this stand-in)
# is tests/unit/test_fleet_scale.py.
