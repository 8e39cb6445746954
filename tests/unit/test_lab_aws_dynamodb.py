"""The lab's AWS layer serves DynamoDB through the gateway endpoint as AWS does (tests/lab/aws/dynamodb_gateway.py):
the EC2 view shows the endpoint, its route and the prefix list = the lab's addresses; the table exists in its
region; requests arriving on the DynamoDB addresses meet the endpoint policy with DynamoDB's own
AccessDeniedException. One layer on loopback: 127.0.0.2 stands for the DynamoDB addresses (policy deny)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
from botocore.exceptions import ClientError

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.lab.aws.loopback import LoopbackLayer, loopback_world  # noqa: E402
from tests.lab.scenario import ScenarioError, parse  # noqa: E402

pytest.importorskip("trustme")
pytest.importorskip("moto")

ACCOUNT = "123456789012"
TABLE = "vpce-lab-table"


def _world(**dynamodb: Any) -> Dict[str, Any]:
    world = loopback_world("ddb")
    world["dynamodb"] = dict({"gateway_endpoint": True, "route": True, "policy": "deny", "ips": ["127.0.0.2"],
                              "prefix_list_cidrs": ["198.51.100.16/28"],
                              "table": {"name": TABLE, "region": "us-east-1"}}, **dynamodb)
    return world


@pytest.fixture(scope="module")
def layer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackLayer]:
    started = LoopbackLayer(tmp_path_factory.mktemp("ddb"), _world(), ["--listen", "127.0.0.2:0"])
    try:
        started.wait_ready(60.0)
        yield started
    finally:
        started.stop()


def _url(layer: LoopbackLayer, host: str) -> str:
    return "https://" + next(a for a in layer.ids["front_addresses"] if a.startswith(host + ":"))


def test_the_ec2_view_shows_the_gateway_its_route_and_the_prefix_list(layer: LoopbackLayer) -> None:
    ec2 = layer.client("ec2")
    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "service-name",
                                                     "Values": ["com.amazonaws.us-east-1.dynamodb"]}])["VpcEndpoints"]
    assert len(endpoints) == 1 and endpoints[0]["VpcEndpointType"] == "Gateway"
    assert endpoints[0]["RouteTableIds"] == [layer.ids["route_table_id"]]
    pl = ec2.describe_prefix_lists(Filters=[{"Name": "prefix-list-name",
                                             "Values": ["com.amazonaws.us-east-1.dynamodb"]}])["PrefixLists"][0]
    assert pl["Cidrs"] == ["198.51.100.16/28"]
    entries = ec2.get_managed_prefix_list_entries(PrefixListId=pl["PrefixListId"])["Entries"]
    assert [e["Cidr"] for e in entries] == ["198.51.100.16/28"]
    table = ec2.describe_route_tables(RouteTableIds=[layer.ids["route_table_id"]])["RouteTables"][0]
    assert {"DestinationPrefixListId": pl["PrefixListId"], "GatewayId": endpoints[0]["VpcEndpointId"]}.items() <= \
        next(r for r in table["Routes"] if r.get("DestinationPrefixListId") == pl["PrefixListId"]).items()


def test_the_endpoint_policy_refuses_what_arrives_through_the_gateway(layer: LoopbackLayer) -> None:
    ddb = layer.client("dynamodb", url=_url(layer, "127.0.0.2"))
    with pytest.raises(ClientError) as caught:
        ddb.describe_table(TableName=TABLE)
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Code"] == "AccessDeniedException"
    assert response["Error"]["Message"] == (
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/SSMInstanceRole/{layer.instance_id} is not authorized to perform: "
        f"dynamodb:DescribeTable on resource: arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{TABLE} with an explicit "
        "deny in a VPC endpoint policy")
    # Not through the gateway (another address of the front): the table is there, ACTIVE.
    other = layer.client("dynamodb").describe_table(TableName=TABLE)["Table"]
    assert other["TableStatus"] == "ACTIVE" and other["TableName"] == TABLE


def test_scenario_knobs_are_strict() -> None:
    sc = parse({"dynamodb": {"route": False, "policy": "no_allow", "table": {"region": "us-west-2"}}})
    assert (sc.dynamodb.route, sc.dynamodb.policy, sc.dynamodb.table_region) == (False, "no_allow", "us-west-2")
    assert not sc.dynamodb.routed and parse({}).dynamodb.routed  # the reference lab: present and routed
    for bad, key in (({"rout": False}, "dynamodb"), ({"policy": "maybe"}, "dynamodb.policy"),
                     ({"table": {"region": "eu-west-1"}}, "dynamodb.table.region")):
        with pytest.raises(ScenarioError, match=f"^<scenario>:{key}: "):
            parse({"dynamodb": bad})
