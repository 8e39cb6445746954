"""``python -m tests.lab set`` reaches the EC2 API too: the AWS layer applies the changed knobs to
moto, so DescribeSecurityGroups, DescribeRouteTables, DescribeVpcEndpoints and DescribeVpcAttribute
tell what the network now does — as they would on AWS, where a console change shows in the API at
once.

Protocol: ``set`` writes ``<state>/world-live.json`` (the whole new world) and sends SIGHUP to the
layer; the layer applies the difference from the world it serves and writes
``<state>/aws-live.json`` = ``{"generation": N, "applied": [...], "error": null}``, where N is the
``generation`` field of the world-live.json it read. Knobs that only the network knows about
(``endpoints.<svc>.unreachable_azs``: a fault with no API trace) change nothing here.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from .seed import ADMIN_KEY, AwsIds, ec2_backend
from .world import World

LIVE_WORLD = "world-live.json"
LIVE_STATUS = "aws-live.json"


def apply(old: World, new: World, ids: AwsIds) -> List[str]:
    """Make moto's view of ``old`` that of ``new``; returns what changed, in words."""
    import boto3

    ec2 = boto3.session.Session(aws_access_key_id=ADMIN_KEY, aws_secret_access_key="lab",
                                region_name=new.region).client("ec2", endpoint_url=ids.moto_url)
    done: List[str] = []
    if (old.instance_sg_outbound_443, old.instance_sg_outbound_443_to) != \
            (new.instance_sg_outbound_443, new.instance_sg_outbound_443_to):
        _replace_rules(ec2, ids.instance_sg_id, "egress", _instance_egress(new))
        done.append(f"{ids.instance_sg_id} egress")
    if old.endpoint_sg_inbound_443 != new.endpoint_sg_inbound_443:
        rules = ([{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
                   "IpRanges": [{"CidrIp": new.instance_subnet.cidr}]}] if new.endpoint_sg_inbound_443 else [])
        _replace_rules(ec2, ids.endpoint_sg_id, "ingress", rules)
        done.append(f"{ids.endpoint_sg_id} ingress")
    if old.internet != new.internet:
        _default_route(ec2, ids, new)
        done.append(f"{ids.route_table_id} 0.0.0.0/0 -> {new.internet}")
    if old.enable_dns_support != new.enable_dns_support:
        ec2.modify_vpc_attribute(VpcId=ids.vpc_id, EnableDnsSupport={"Value": new.enable_dns_support})
        done.append(f"{ids.vpc_id} enableDnsSupport={new.enable_dns_support}")
    before = {e.service: e.private_dns for e in old.interface_endpoints}
    backend = ec2_backend(new.region)
    for spec in new.interface_endpoints:
        endpoint_id = ids.endpoints.get(spec.service)
        if endpoint_id and before.get(spec.service) != spec.private_dns:
            # moto's ModifyVpcEndpoint ignores PrivateDnsEnabled: set the flag it serves directly.
            backend.vpc_end_points[endpoint_id].private_dns_enabled = spec.private_dns
            done.append(f"{endpoint_id} PrivateDnsEnabled={spec.private_dns}")
    return done


def _instance_egress(world: World) -> List[Dict[str, Any]]:
    if not world.instance_sg_outbound_443:
        return []
    cidr = "0.0.0.0/0" if world.instance_sg_outbound_443_to == "anywhere" else world.vpc_cidr
    return [{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": cidr}]}]


def _replace_rules(ec2: Any, group_id: str, direction: str, rules: List[Dict[str, Any]]) -> None:
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    current = group["IpPermissionsEgress" if direction == "egress" else "IpPermissions"]
    revoke = getattr(ec2, f"revoke_security_group_{direction}")
    authorize = getattr(ec2, f"authorize_security_group_{direction}")
    if current:
        revoke(GroupId=group_id, IpPermissions=[_permission(p) for p in current])
    if rules:
        authorize(GroupId=group_id, IpPermissions=rules)


def _permission(p: Dict[str, Any]) -> Dict[str, Any]:
    """A described permission as a revoke argument (moto echoes keys revoke does not take)."""
    keep = ("IpProtocol", "FromPort", "ToPort", "IpRanges", "Ipv6Ranges", "PrefixListIds", "UserIdGroupPairs")
    return {k: v for k, v in p.items() if k in keep and v not in (None, [])}


def _default_route(ec2: Any, ids: AwsIds, world: World) -> None:
    table = ec2.describe_route_tables(RouteTableIds=[ids.route_table_id])["RouteTables"][0]
    if any(r.get("DestinationCidrBlock") == "0.0.0.0/0" for r in table.get("Routes", [])):
        ec2.delete_route(RouteTableId=ids.route_table_id, DestinationCidrBlock="0.0.0.0/0")
    if world.internet == "none":
        return
    gateways = ec2.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [ids.vpc_id]}])["InternetGateways"]
    if gateways:
        igw = gateways[0]["InternetGatewayId"]
    else:
        igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=ids.vpc_id)
    if world.internet == "igw":
        ec2.create_route(RouteTableId=ids.route_table_id, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        return
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    subnet = next(iter(ids.subnet_ids.values()))
    nat = ec2.create_nat_gateway(SubnetId=subnet, AllocationId=allocation)["NatGateway"]["NatGatewayId"]
    ec2.create_route(RouteTableId=ids.route_table_id, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)


def handle(state_dir: Path, current: World, ids: Optional[AwsIds]) -> World:
    """SIGHUP: apply world-live.json; returns the world now served (unchanged on any error)."""
    status: Dict[str, Any] = {"generation": None, "applied": [], "error": None}
    new = current
    try:
        raw = json.loads((state_dir / LIVE_WORLD).read_text())
        status["generation"] = raw.get("generation")
        candidate = World.from_dict(raw)
        if ids is None:
            raise RuntimeError("the layer has not finished seeding")
        status["applied"] = apply(current, candidate, ids)
        new = candidate
    except Exception as exc:  # noqa: BLE001 - reported to `set` in one line, the layer keeps running
        status["error"] = f"{type(exc).__name__}: {exc}"
    tmp = state_dir / (LIVE_STATUS + ".tmp")
    tmp.write_text(json.dumps(status) + "\n")
    os.replace(tmp, state_dir / LIVE_STATUS)
    return new
