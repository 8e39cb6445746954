"""DynamoDB through the lab's gateway endpoint, in moto (world.json ``dynamodb``; tests/lab/ddbknobs.py).

* the EC2 view: the ``com.amazonaws.<region>.dynamodb`` managed prefix list holds the lab's DynamoDB
  CIDRs (moto ships real AWS ranges), the gateway endpoint exists and — with ``route`` — moto adds its
  prefix-list route to the instance subnet's table, as AWS does;
* the table (in ``table.region``) and the role's read permission (IAM's view; the AWS layer enforces
  ``instance.profile.denied_actions``);
* the endpoint policy: requests that arrive on the DynamoDB addresses came through the gateway
  endpoint (the router carries them only with its route), so authz.py answers for its policy.

A world.json without ``dynamodb`` (older files, loopback tests) gets none of this.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

POLICIES = ("allow", "deny", "no_allow")


@dataclass(frozen=True)
class DynamoDbSpec:
    gateway_endpoint: bool = True
    route: bool = True
    policy: str = "allow"
    ips: Tuple[str, ...] = ()
    prefix_list_cidrs: Tuple[str, ...] = ()
    table_name: str = "vpce-lab-table"
    table_region: str = "us-east-1"


def parse_spec(raw: Optional[Mapping[str, Any]]) -> Optional[DynamoDbSpec]:
    if raw is None:
        return None
    table = raw.get("table") or {}
    policy = raw.get("policy", "allow")
    if policy not in POLICIES:
        raise ValueError(f"dynamodb policy: {policy!r} is not one of {', '.join(POLICIES)}")
    return DynamoDbSpec(gateway_endpoint=bool(raw.get("gateway_endpoint", True)), route=bool(raw.get("route", True)),
                        policy=str(policy), ips=tuple(raw.get("ips", ())),
                        prefix_list_cidrs=tuple(raw.get("prefix_list_cidrs", ())),
                        table_name=str(table.get("name", DynamoDbSpec.table_name)),
                        table_region=str(table.get("region", DynamoDbSpec.table_region)))


def policy_by_ip(spec: Optional[DynamoDbSpec]) -> Dict[str, str]:
    """The gateway endpoint's policy for requests arriving on DynamoDB's lab addresses."""
    if spec is None or not (spec.gateway_endpoint and spec.route):
        return {}
    return {ip: spec.policy for ip in spec.ips}


def seed(world: Any, ec2: Any, client: Callable[..., Any], backend: Any, vpc_id: str, route_table_id: str,
         role_name: Optional[str], tags: Callable[[str, str], List[Dict[str, Any]]]) -> Optional[str]:
    """Prefix list, gateway endpoint (+ route), table, IAM read policy; returns the endpoint id."""
    spec: Optional[DynamoDbSpec] = getattr(world, "dynamodb", None)
    if spec is None:
        return None
    wanted = f"com.amazonaws.{world.region}.dynamodb"
    for prefix_list in backend.managed_prefix_lists.values():
        if prefix_list.prefix_list_name == wanted:  # as seed._patch_s3_prefix_list does for S3
            cidrs = list(spec.prefix_list_cidrs)
            prefix_list.entries = {prefix_list.version: [{"Cidr": c, "Description": "lab DynamoDB"} for c in cidrs]}
            prefix_list.cidrs = cidrs
    endpoint_id = None
    if spec.gateway_endpoint:
        endpoint_id = ec2.create_vpc_endpoint(
            VpcId=vpc_id, ServiceName=wanted, VpcEndpointType="Gateway",
            RouteTableIds=[route_table_id] if spec.route else [],
            TagSpecifications=tags("vpc-endpoint", "dynamodb"))["VpcEndpoint"]["VpcEndpointId"]
        backend.vpc_end_points[endpoint_id].private_dns_enabled = False  # a gateway endpoint has no DNS
    client("dynamodb", spec.table_region).create_table(
        TableName=spec.table_name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    if role_name:
        _iam(client("iam"), world, role_name, spec)
    return endpoint_id


def _iam(iam: Any, world: Any, role_name: str, spec: DynamoDbSpec) -> None:
    from .authz import action_matches
    from .seed import ACCOUNT_ID

    actions = [a for a in ("dynamodb:DescribeTable", "dynamodb:ListTables")
               if not action_matches(a, world.profile.denied_actions)]
    if not actions:
        return
    table_arn = f"arn:aws:dynamodb:{spec.table_region}:{ACCOUNT_ID}:table/{spec.table_name}"
    iam.put_role_policy(RoleName=role_name, PolicyName="lab-dynamodb-read", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": [table_arn, "*"]}]}))
