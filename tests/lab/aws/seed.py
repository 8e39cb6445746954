"""Seed moto so that the API view agrees with the lab network.

Everything that moto can express is created through its own API (boto3 against the in-process
server), so the objects are exactly what moto would hold after real calls. What moto cannot express
is then patched on its in-process backend objects (moto runs in this process):

* interface endpoint ENIs get the lab's ENI IPs (moto picks random IPs outside the subnet),
  the endpoint's ``DnsEntries`` get the real shape (moto invents ``vpce-…-x.com.amazonaws…``);
* the ``com.amazonaws.<region>.s3`` prefix list holds the lab's S3 CIDRs (moto ships real AWS ranges);
* the instance's public IP and the endpoints' ``State`` follow world.json.
"""
from __future__ import annotations

import ipaddress
import json
import random
import string
from dataclasses import asdict, dataclass, field
from datetime import timezone
from typing import Any, Dict, List, Optional, Tuple

import boto3

from .. import ipv6lab, nacl
from .world import InterfaceEndpointSpec, World

ACCOUNT_ID = "123456789012"  # moto's default account: every unknown access key lands here
ADMIN_KEY = "AKIAVPCELABADMIN0001"  # the layer's own credentials for seeding; any value works in moto

# Route 53 hosted zone of the regional *.vpce.amazonaws.com names. Only us-east-1's value is known
# here; it is cosmetic (nothing resolves through it in the lab).
_VPCE_HOSTED_ZONES = {"us-east-1": "Z7HUB22UULQXV"}
# The managed private hosted zone that Private DNS creates: one per endpoint; any well-formed id.
_ZONE_CHARS = string.ascii_uppercase + string.digits

SSM_CORE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{
        "Effect": "Allow",
        "Action": ["ssm:DescribeAssociation", "ssm:GetDocument", "ssm:ListAssociations",
                   "ssm:ListInstanceAssociations", "ssm:PutInventory", "ssm:UpdateInstanceInformation",
                   "ssmmessages:*", "ec2messages:*"],
        "Resource": "*",
    }],
}
EC2_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
# IMDS role credentials last ~6 hours on EC2.
CREDENTIALS_DURATION_S = 6 * 3600


@dataclass(frozen=True)
class InstanceIdentity:
    """Who the instance is when it signs with its role credentials (used by the S3 knobs)."""

    instance_id: str
    role_name: Optional[str]
    access_key_id: Optional[str]

    @property
    def principal_arn(self) -> Optional[str]:
        if not self.role_name:
            return None
        return f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{self.role_name}/{self.instance_id}"


@dataclass
class AwsIds:
    """The contract's aws-ids.json (docs/lab-contract.md), plus ``fleet_instance_ids`` when asked."""

    vpc_id: str
    subnet_ids: Dict[str, str]
    route_table_id: str
    instance_id: str
    instance_sg_id: str
    endpoint_sg_id: str
    endpoints: Dict[str, str]
    s3_gateway_endpoint_id: Optional[str]
    s3_prefix_list_id: str
    credentials: Optional[Dict[str, str]]
    role_name: Optional[str]
    instance_profile_arn: Optional[str]
    moto_url: str
    fleet_instance_ids: List[str] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        data = asdict(self)
        if not self.fleet_instance_ids:
            del data["fleet_instance_ids"]  # keep the contract's exact key set in the common case
        return data


def seed(world: World, moto_url: str, fleet_size: int = 0) -> AwsIds:
    """Create the lab's VPC, endpoints, instance, IAM and bucket in moto; return their ids."""
    session = boto3.session.Session(
        aws_access_key_id=ADMIN_KEY, aws_secret_access_key="lab", region_name=world.region
    )

    def client(service: str, region: Optional[str] = None) -> Any:
        return session.client(service, endpoint_url=moto_url, region_name=region or world.region)

    ec2 = client("ec2")
    name = f"vdl-{world.name}"

    def tags(resource: str, suffix: str) -> List[Dict[str, Any]]:
        return [{"ResourceType": resource, "Tags": [{"Key": "Name", "Value": f"{name}-{suffix}"}]}]

    vpc_id = ec2.create_vpc(CidrBlock=world.vpc_cidr, TagSpecifications=tags("vpc", "vpc"))["Vpc"]["VpcId"]
    subnet_ids = {
        s.az: ec2.create_subnet(
            VpcId=vpc_id, CidrBlock=s.cidr, AvailabilityZone=s.az, TagSpecifications=tags("subnet", s.az)
        )["Subnet"]["SubnetId"]
        for s in world.subnets
    }
    instance_subnet_id = subnet_ids[world.instance_subnet_az]

    instance_sg_id, endpoint_sg_id = _security_groups(ec2, world, vpc_id, name)
    route_table_id = _route_table(ec2, world, vpc_id, instance_subnet_id, subnet_ids, name)
    _network_acls(ec2, world, vpc_id, subnet_ids, name)

    s3_prefix_list_id = _patch_s3_prefix_list(world)
    s3_gateway_endpoint_id = None
    if world.s3.gateway_endpoint:
        # moto adds the prefix-list route to every route table given here, as AWS does.
        s3_gateway_endpoint_id = ec2.create_vpc_endpoint(
            VpcId=vpc_id,
            ServiceName=f"com.amazonaws.{world.region}.s3",
            VpcEndpointType="Gateway",
            RouteTableIds=_s3_route_tables(ec2, world, vpc_id, route_table_id, subnet_ids, name),
            TagSpecifications=tags("vpc-endpoint", "s3"),
        )["VpcEndpoint"]["VpcEndpointId"]
        # moto defaults PrivateDnsEnabled to true for every type; a gateway endpoint has no DNS.
        ec2_backend(world.region).vpc_end_points[s3_gateway_endpoint_id].private_dns_enabled = False

    endpoints: Dict[str, str] = {}
    for spec in world.interface_endpoints:
        created = ec2.create_vpc_endpoint(
            VpcId=vpc_id,
            ServiceName=f"com.amazonaws.{world.region}.{spec.service}",
            VpcEndpointType="Interface",
            SubnetIds=[subnet_ids[eni.az] for eni in spec.enis],
            SecurityGroupIds=[endpoint_sg_id],
            PrivateDnsEnabled=spec.private_dns,
            TagSpecifications=tags("vpc-endpoint", spec.service),
        )["VpcEndpoint"]
        endpoints[spec.service] = created["VpcEndpointId"]
        _patch_interface_endpoint(world, spec, created["VpcEndpointId"], endpoint_sg_id)

    # Set last: real AWS refuses Private DNS endpoints in a VPC without DNS support/hostnames, so a
    # scenario with those off is "endpoints created first, attributes turned off later".
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsSupport={"Value": world.enable_dns_support})
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": world.enable_dns_hostnames})
    _dhcp_options(ec2, world, vpc_id, instance_sg_id)

    role_name = profile_arn = None
    if world.profile.attached:
        role_name, profile_arn = _iam(client("iam"), world)

    image_id = _amazon_linux_image(world.region)
    run_args: Dict[str, Any] = dict(
        ImageId=image_id,
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        SubnetId=instance_subnet_id,
        PrivateIpAddress=world.instance_ip,
        SecurityGroupIds=[instance_sg_id],
        TagSpecifications=tags("instance", "instance"),
    )
    if profile_arn:
        run_args["IamInstanceProfile"] = {"Arn": profile_arn}
    instance_id = ec2.run_instances(**run_args)["Instances"][0]["InstanceId"]
    _patch_public_ip(world, instance_id)

    fleet_ids: List[str] = []
    if fleet_size > 0:
        # Other managed instances of the account, for fleet queries (GetInventory across nodes). They
        # get a subnet of their own at the top of the VPC range: a lab /24 holds only 251 instances.
        fleet_subnet = ec2.create_subnet(
            VpcId=vpc_id, CidrBlock=_fleet_cidr(world, fleet_size), AvailabilityZone=world.instance_subnet_az,
            TagSpecifications=tags("subnet", "fleet"))["Subnet"]["SubnetId"]
        fleet = ec2.run_instances(
            ImageId=image_id, InstanceType="t3.micro", MinCount=fleet_size, MaxCount=fleet_size,
            SubnetId=fleet_subnet, SecurityGroupIds=[instance_sg_id],
        )
        fleet_ids = [i["InstanceId"] for i in fleet["Instances"]]

    credentials = None
    if role_name:
        credentials = _role_credentials(client("sts"), role_name, instance_id)

    _bucket(session, moto_url, world)
    from .dynamodb_gateway import seed as seed_dynamodb  # (it imports this module)

    seed_dynamodb(world, ec2, client, ec2_backend(world.region), vpc_id, route_table_id, role_name, tags)

    return AwsIds(
        vpc_id=vpc_id,
        subnet_ids=subnet_ids,
        route_table_id=route_table_id,
        instance_id=instance_id,
        instance_sg_id=instance_sg_id,
        endpoint_sg_id=endpoint_sg_id,
        endpoints=endpoints,
        s3_gateway_endpoint_id=s3_gateway_endpoint_id,
        s3_prefix_list_id=s3_prefix_list_id,
        credentials=credentials,
        role_name=role_name,
        instance_profile_arn=profile_arn,
        moto_url=moto_url,
        fleet_instance_ids=fleet_ids,
    )


# --- what moto expresses through its API -----------------------------------------------------------

def _security_groups(ec2: Any, world: World, vpc_id: str, name: str) -> Tuple[str, str]:
    instance_sg = ec2.create_security_group(
        VpcId=vpc_id, GroupName=f"{name}-instance", Description="lab instance: outbound 443 only"
    )["GroupId"]
    # A new group allows all outbound; the reference lab's instance group allows TCP 443 only.
    ec2.revoke_security_group_egress(
        GroupId=instance_sg, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )
    if world.instance_sg_outbound_443:
        ec2.authorize_security_group_egress(
            GroupId=instance_sg,
            IpPermissions=[{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
                            "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "HTTPS to endpoints and S3"}
                                         if world.instance_sg_outbound_443_to == "anywhere" else
                                         {"CidrIp": world.vpc_cidr, "Description": "HTTPS to the endpoints only"}],
                            **ipv6lab.sg_egress(world.ipv6)}],
        )
    endpoint_sg = ec2.create_security_group(
        VpcId=vpc_id, GroupName=f"{name}-endpoints", Description="interface endpoints: inbound 443"
    )["GroupId"]
    if world.endpoint_sg_inbound_443:
        ec2.authorize_security_group_ingress(
            GroupId=endpoint_sg,
            IpPermissions=[{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
                            "IpRanges": [{"CidrIp": world.instance_subnet.cidr,
                                          "Description": "HTTPS from the instance subnet"}],
                            **ipv6lab.sg_ingress(world.ipv6)}],
        )
    return instance_sg, endpoint_sg


def _network_acls(ec2: Any, world: World, vpc_id: str, subnet_ids: Dict[str, str], name: str) -> None:
    """A custom NACL per subnet the scenario names, with its entries, replacing the default one
    (which allows everything) in that subnet's association."""
    if not world.nacls:
        return
    default = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                                 {"Name": "default", "Values": ["true"]}])["NetworkAcls"][0]
    associations = {a["SubnetId"]: a["NetworkAclAssociationId"] for a in default.get("Associations", [])}
    for letter, spec in sorted(world.nacls.items()):
        subnet_id = next(sid for az, sid in subnet_ids.items() if az.endswith(letter))
        acl_id = ec2.create_network_acl(VpcId=vpc_id, TagSpecifications=[
            {"ResourceType": "network-acl", "Tags": [{"Key": "Name", "Value": f"{name}-nacl-{letter}"}]}],
        )["NetworkAcl"]["NetworkAclId"]
        for entry in nacl.api_entries(spec):
            ec2.create_network_acl_entry(NetworkAclId=acl_id, **entry)
        ec2.replace_network_acl_association(AssociationId=associations[subnet_id], NetworkAclId=acl_id)


def _s3_route_tables(ec2: Any, world: World, vpc_id: str, instance_table: str, subnet_ids: Dict[str, str],
                     name: str) -> List[str]:
    """Where the S3 gateway endpoint's route goes: the instance subnet's table, or (``route_table:
    other``) only the table of another subnet — associated with the wrong table, a common slip."""
    if not world.s3.route:
        return []
    if world.s3.route_table == "instance":
        return [instance_table]
    other = ec2.create_route_table(VpcId=vpc_id, TagSpecifications=[
        {"ResourceType": "route-table", "Tags": [{"Key": "Name", "Value": f"{name}-endpoints"}]}])["RouteTable"]["RouteTableId"]
    subnet = next(sid for az, sid in sorted(subnet_ids.items()) if az != world.instance_subnet_az)
    ec2.associate_route_table(RouteTableId=other, SubnetId=subnet)
    return [other]


def _route_table(
    ec2: Any, world: World, vpc_id: str, instance_subnet_id: str, subnet_ids: Dict[str, str], name: str
) -> str:
    """The instance subnet's own table (explicitly associated): local, plus a default route only
    when the scenario has an internet path."""
    rt = ec2.create_route_table(VpcId=vpc_id, TagSpecifications=[
        {"ResourceType": "route-table", "Tags": [{"Key": "Name", "Value": f"{name}-private"}]}])
    route_table_id = rt["RouteTable"]["RouteTableId"]
    ec2.associate_route_table(RouteTableId=route_table_id, SubnetId=instance_subnet_id)
    if world.internet in ("igw", "nat"):
        igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc_id)
        if world.internet == "igw":
            ec2.create_route(RouteTableId=route_table_id, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        else:
            # A NAT gateway lives in another (public) subnet when there is one.
            others = [sid for sid in subnet_ids.values() if sid != instance_subnet_id]
            allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
            nat = ec2.create_nat_gateway(SubnetId=(others or [instance_subnet_id])[0], AllocationId=allocation)
            ec2.create_route(RouteTableId=route_table_id, DestinationCidrBlock="0.0.0.0/0",
                             NatGatewayId=nat["NatGateway"]["NatGatewayId"])
    return route_table_id


def _dhcp_options(ec2: Any, world: World, vpc_id: str, instance_sg_id: str) -> None:
    """The account's default option set (AmazonProvidedDNS), which a new VPC gets on AWS (moto leaves
    "default"); then the scenario's own set with custom DNS servers, and the instance SG's egress to
    them (DNS to the Amazon resolver needs no rule; to any other server it does)."""
    internal = _internal_domain(world.region)
    amazon = ec2.create_dhcp_options(DhcpConfigurations=[
        {"Key": "domain-name", "Values": [internal]},
        {"Key": "domain-name-servers", "Values": ["AmazonProvidedDNS"]}])["DhcpOptions"]["DhcpOptionsId"]
    chosen = amazon
    custom = [s for s in world.dhcp_domain_name_servers if s != "AmazonProvidedDNS"]
    if custom:
        chosen = ec2.create_dhcp_options(DhcpConfigurations=[
            {"Key": "domain-name", "Values": [internal]},
            {"Key": "domain-name-servers", "Values": list(world.dhcp_domain_name_servers)}])["DhcpOptions"]["DhcpOptionsId"]
        ec2.authorize_security_group_egress(GroupId=instance_sg_id, IpPermissions=[
            {"IpProtocol": proto, "FromPort": 53, "ToPort": 53,
             "IpRanges": [{"CidrIp": f"{ip}/32", "Description": "DNS to the custom DNS server"} for ip in custom]}
            for proto in ("udp", "tcp")])
    ec2.associate_dhcp_options(DhcpOptionsId=chosen, VpcId=vpc_id)


def _fleet_cidr(world: World, size: int) -> str:
    """The highest block of the VPC that holds ``size`` instances (AWS reserves 5 addresses per
    subnet) and overlaps no lab subnet."""
    vpc = ipaddress.ip_network(world.vpc_cidr)
    prefix = min(24, 32 - (size + 5 - 1).bit_length())
    taken = [ipaddress.ip_network(s.cidr) for s in world.subnets]
    for block in reversed(list(vpc.subnets(new_prefix=prefix))):
        if not any(block.overlaps(t) for t in taken):
            return str(block)
    raise ValueError(f"no room for {size} fleet instances in {world.vpc_cidr}")


def _iam(iam: Any, world: World) -> Tuple[str, str]:
    from .authz import action_matches  # (authz imports this module)

    role = world.profile.role
    trust = EC2_TRUST_POLICY
    if not world.profile.trusts_ec2:  # what IAM shows for a role EC2 cannot assume (IMDS says so too)
        trust = json.loads(json.dumps(EC2_TRUST_POLICY).replace("ec2.amazonaws.com", "lambda.amazonaws.com"))
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust),
                    Description="vpce-doctor lab instance role")
    # moto does not load AWS managed policies unless told to (slow): an inline copy of the part of
    # AmazonSSMManagedInstanceCore that matters here stands in for it, without the actions the
    # scenario's identity policy lacks (the AWS layer refuses those; IAM's view agrees).
    core = dict(SSM_CORE_POLICY["Statement"][0])
    core["Action"] = [a for a in core["Action"] if not action_matches(a, world.profile.denied_actions)]
    if core["Action"]:
        iam.put_role_policy(RoleName=role, PolicyName="AmazonSSMManagedInstanceCore",
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [core]}))
    if world.profile.s3_permission:
        bucket_arn = f"arn:aws:s3:::{world.bucket.name}"
        iam.put_role_policy(RoleName=role, PolicyName="lab-s3-read", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"],
                 "Resource": [bucket_arn, bucket_arn + "/*"]},
                {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"},
            ],
        }))
    profile = iam.create_instance_profile(InstanceProfileName=role)["InstanceProfile"]
    iam.add_role_to_instance_profile(InstanceProfileName=role, RoleName=role)
    return role, profile["Arn"]


def _role_credentials(sts: Any, role_name: str, instance_id: str) -> Dict[str, str]:
    """What IMDS serves: moto's own AssumeRole, with the instance id as session name as on EC2, so
    GetCallerIdentity with these keys answers ``assumed-role/<role>/<instance-id>``."""
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/{role_name}",
        RoleSessionName=instance_id,
        DurationSeconds=CREDENTIALS_DURATION_S,
    )["Credentials"]
    return {
        "AccessKeyId": creds["AccessKeyId"],
        "SecretAccessKey": creds["SecretAccessKey"],
        "Token": creds["SessionToken"],
        "Expiration": creds["Expiration"].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _bucket(session: Any, moto_url: str, world: World) -> None:
    bucket = world.bucket
    s3 = session.client("s3", endpoint_url=moto_url, region_name=bucket.region,
                        config=_path_style())
    create: Dict[str, Any] = {"Bucket": bucket.name}
    if bucket.region != "us-east-1":
        create["CreateBucketConfiguration"] = {"LocationConstraint": bucket.region}
    s3.create_bucket(**create)
    s3.put_object(Bucket=bucket.name, Key=bucket.key, Body=bucket.body.encode())


def _path_style() -> Any:
    from botocore.config import Config

    return Config(s3={"addressing_style": "path"})


# --- what moto cannot express: patched on its backend objects ---------------------------------------

def ec2_backend(region: str) -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[ACCOUNT_ID][region]


def _amazon_linux_image(region: str) -> str:
    images = ec2_backend(region).amis
    for image_id, image in images.items():
        if (image.name or "").startswith("amzn2-ami-hvm"):
            return image_id
    return next(iter(images))


def _patch_s3_prefix_list(world: World) -> str:
    """Make ``com.amazonaws.<region>.s3`` hold the lab's S3 CIDRs, for all three APIs that show it:
    GetManagedPrefixListEntries and DescribeManagedPrefixLists read ``entries``; DescribePrefixLists
    renders a ``Cidrs`` member that moto's object lacks, so it is added."""
    backend = ec2_backend(world.region)
    wanted = f"com.amazonaws.{world.region}.s3"
    for prefix_list in backend.managed_prefix_lists.values():
        if prefix_list.prefix_list_name == wanted:
            cidrs = list(world.s3.prefix_list_cidrs)
            prefix_list.entries = {prefix_list.version: [{"Cidr": c, "Description": "lab S3"} for c in cidrs]}
            prefix_list.cidrs = cidrs
            return prefix_list.id
    raise RuntimeError(f"moto has no {wanted} prefix list")


def _patch_interface_endpoint(world: World, spec: InterfaceEndpointSpec, endpoint_id: str, sg_id: str) -> None:
    backend = ec2_backend(world.region)
    endpoint = backend.vpc_end_points[endpoint_id]
    endpoint.state = spec.state
    endpoint.dns_entries = _dns_entries(world, spec, endpoint_id)
    endpoint.ip_address_type = "ipv4"
    endpoint.dns_options = {"DnsRecordIpType": "ipv4"}
    endpoint_sg = backend.get_security_group_from_id(sg_id)

    ip_by_az = {eni_spec.az: eni_spec.ip for eni_spec in spec.enis}
    for eni_id in endpoint.network_interface_ids:
        eni = backend.get_network_interface(eni_id)
        ip = ip_by_az[eni.subnet.availability_zone]
        if ipaddress.ip_address(ip) not in ipaddress.ip_network(eni.subnet.cidr_block):
            raise RuntimeError(f"{spec.service}: ENI IP {ip} is outside subnet {eni.subnet.cidr_block}")
        private_dns_name = "ip-{}.{}".format(ip.replace(".", "-"), _internal_domain(world.region))
        eni.private_ip_address = ip
        eni.private_ip_addresses = [{"Primary": True, "PrivateIpAddress": ip, "PrivateDnsName": private_dns_name}]
        eni.private_dns_name = private_dns_name
        # What AWS shows for an endpoint-owned ENI.
        eni.description = f"VPC Endpoint Interface {endpoint_id}"
        eni.interface_type = "vpc_endpoint"
        eni.requester_managed = True
        eni.requester_id = "727180483921"  # an AWS-owned account, as AWS shows it
        eni.status = "in-use"
        eni._group_set = [endpoint_sg]


def _dns_entries(world: World, spec: InterfaceEndpointSpec, endpoint_id: str) -> List[Dict[str, str]]:
    """Regional name first, then one zonal name per AZ, then (Private DNS on) the service name."""
    rng = random.Random(endpoint_id)  # stable per endpoint
    suffix = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    base = f"{spec.service}.{world.region}.vpce.{world.domain}"
    zone = _VPCE_HOSTED_ZONES.get(world.region, "Z7HUB22UULQXV")
    entries = [{"DnsName": f"{endpoint_id}-{suffix}.{base}", "HostedZoneId": zone}]
    for az in sorted({e.az for e in spec.enis}):
        entries.append({"DnsName": f"{endpoint_id}-{suffix}-{az}.{base}", "HostedZoneId": zone})
    if spec.private_dns:
        private_zone = "Z" + "".join(rng.choice(_ZONE_CHARS) for _ in range(20))
        entries.append({"DnsName": spec.hostname, "HostedZoneId": private_zone})
    return entries


def _patch_public_ip(world: World, instance_id: str) -> None:
    instance = ec2_backend(world.region).get_instance(instance_id)
    instance.nics[0].public_ip = world.public_ip or None


def _internal_domain(region: str) -> str:
    return "ec2.internal" if region == "us-east-1" else f"{region}.compute.internal"
