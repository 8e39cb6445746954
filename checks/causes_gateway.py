"""Causes: S3 and DynamoDB through their gateway endpoints, and isolation (egress). Part of the one catalogue in ``checks.causes`` (CAUSES keeps
this order: instance, network, gateway, aws)."""
from __future__ import annotations

from typing import List

from .causetype import Cause

CAUSES: List[Cause] = [
    # --- S3 --------------------------------------------------------------------------------------
    Cause("s3_no_gateway_route",
          "S3 at {ip} did not answer: the subnet's route table has no route for the S3 prefix list to a "
          "gateway endpoint",
          "Associate the VPC's S3 gateway endpoint with the subnet's route table (aws ec2 modify-vpc-endpoint "
          "--vpc-endpoint-id <vpce-id> --add-route-table-ids <the subnet's route table>); if the VPC has none, "
          "create one with the route table",
          "aws ec2 create-vpc-endpoint --vpc-id {vpc_id} --vpc-endpoint-type Gateway --service-name "
          "com.amazonaws.{region}.s3 --route-table-ids {route_table_id}",
          resource="route-table"),
    Cause("s3_route_missing",
          "The route table {route_table_id} of this subnet has no route to the S3 prefix list {prefix_list_id} "
          "through a gateway endpoint",
          "Associate the S3 gateway endpoint with this subnet's route table",
          "aws ec2 modify-vpc-endpoint --vpc-endpoint-id {endpoint_id} --add-route-table-ids {route_table_id}",
          resource="route-table"),
    Cause("s3_route_other_tables",
          "The S3 gateway endpoint {endpoint_id} is associated with {other_tables}, not with {route_table_id}, the "
          "route table of this subnet: only subnets that use those tables reach S3 through it",
          "Associate the endpoint with this subnet's route table as well",
          "aws ec2 modify-vpc-endpoint --vpc-endpoint-id {endpoint_id} --add-route-table-ids {route_table_id}",
          resource="route-table"),
    Cause("s3_outside_prefix_list",
          "{host} resolves to {answers}, which are not in the region's S3 prefix list {prefix_list_id}",
          "Check for DNS overrides of S3 names; the gateway endpoint only carries addresses in the prefix list",
          resource="vpc"),
    Cause("s3_bucket_other_region",
          "The bucket {bucket} is in {bucket_region}, not {region}: gateway endpoints only reach buckets in "
          "the VPC's own region",
          "Use a bucket in {region}, or reach {bucket_region} another way (an interface endpoint there via peering, or a NAT)",
          resource="bucket"),
    Cause("s3_access_denied_iam",
          "S3 denied {action} ({error}): the instance profile's role lacks the permission",
          "Grant the role {action} on {resource} (an IAM policy on the instance profile's role)",
          resource="role"),
    Cause("s3_access_denied_endpoint_policy",
          "S3 denied {action} because the VPC endpoint's policy does not allow it ({error})",
          "Allow {action} on {resource} in the gateway endpoint's policy",
          "aws ec2 modify-vpc-endpoint --vpc-endpoint-id {endpoint_id} --policy-document file://policy.json",
          resource="gateway-endpoint"),
    Cause("s3_access_denied_bucket_policy",
          "S3 denied {action} because a bucket policy denies it ({error})",
          "Check the bucket policy of {bucket} (aws:sourceVpce / aws:SourceVpc conditions)",
          resource="bucket"),
    Cause("s3_access_denied",
          "S3 denied {action} ({error}): the instance profile lacks the permission, or an endpoint or bucket "
          "policy denies it",
          "Grant the role {action} on {resource}, and check the gateway endpoint's policy and the bucket policy",
          resource="role"),
    Cause("s3_no_such_bucket",
          "The bucket {bucket} does not exist",
          "Fix the bucket name in the config (s3.bucket)",
          resource="bucket"),
    Cause("s3_no_such_key",
          "The object {key} does not exist in {bucket}",
          "Fix the key in the config (s3.key) or upload the object",
          resource="bucket"),
    Cause("s3_no_credentials",
          "No AWS credentials for the S3 call: {error}",
          "Attach an instance profile (or configure credentials) with S3 permissions",
          resource="instance"),
    Cause("s3_error",
          "S3 answered {error}",
          "See the error code in the AWS S3 documentation",
          resource="bucket"),
    Cause("s3_interface_endpoint",
          "{host} resolves to private addresses {answers}: an S3 interface endpoint with Private DNS serves S3 here",
          "Nothing to fix if intended; the gateway endpoint is not used for this name",
          resource="endpoint"),
    Cause("s3_sg_no_outbound_443",
          "S3 at {ip} did not answer and the instance's security group {sg_ids} has no outbound TCP 443 rule "
          "to the S3 prefix list {prefix_list_id} (or a CIDR that holds S3's addresses)",
          "Add an outbound rule TCP 443 to the S3 prefix list on the instance's security group",
          "aws ec2 authorize-security-group-egress --group-id {sg_id} --ip-permissions "
          "IpProtocol=tcp,FromPort=443,ToPort=443,PrefixListIds=[{{PrefixListId={prefix_list_id}}}]",
          resource="security-group"),
    Cause("s3_path_blocked",
          "S3 at {ip} did not answer although the route table {route_table_id} sends the S3 prefix list to the "
          "gateway endpoint {endpoint_id}: a network ACL, a host firewall or a security group drops the traffic",
          "Check the subnet's network ACL (outbound TCP 443 and inbound TCP 1024-65535 for the S3 prefix list's "
          "CIDRs), the instance security group's outbound 443 and any host firewall or proxy",
          resource="network-acl"),
    Cause("s3_no_answer",
          "S3 at {ip} did not answer TCP 443: something drops the packets, as a VPC does without a route or "
          "an allowing rule; which one is not proven here ({why}). In order of likelihood: {order}",
          "1) Associate the S3 gateway endpoint with this subnet's route table (aws ec2 modify-vpc-endpoint "
          "--vpc-endpoint-id <vpce-id> --add-route-table-ids {route_table_id}); 2) allow outbound TCP 443 to the "
          "S3 prefix list on the instance's security group (aws ec2 authorize-security-group-egress --group-id "
          "{sg_id} --ip-permissions IpProtocol=tcp,FromPort=443,ToPort=443,PrefixListIds=[{{PrefixListId="
          "{prefix_list_id}}}]; the id: aws ec2 describe-prefix-lists --filters Name=prefix-list-name,"
          "Values=com.amazonaws.{region}.s3); 3) network ACLs cannot reference prefix lists: the subnet's NACL "
          "must allow S3's CIDRs (aws ec2 get-managed-prefix-list-entries --prefix-list-id {prefix_list_id}) "
          "out on TCP 443 and back in on TCP 1024-65535",
          resource="route-table"),
    # --- DynamoDB (checks/dynamodb.py) ------------------------------------------------------------
    Cause("dynamodb_outside_prefix_list",
          "{host} resolves to {answers}, which are not in the region's DynamoDB prefix list {prefix_list_id}",
          "Check for DNS overrides of DynamoDB names; the gateway endpoint only carries addresses in the prefix list",
          resource="vpc"),
    Cause("dynamodb_no_gateway_route",
          "DynamoDB at {ip} is not routed: the VPC has no DynamoDB gateway endpoint for the subnet's route table "
          "{route_table_id}",
          "Create a DynamoDB gateway endpoint associated with the subnet's route table",
          "aws ec2 create-vpc-endpoint --vpc-id {vpc_id} --vpc-endpoint-type Gateway --service-name "
          "com.amazonaws.{region}.dynamodb --route-table-ids {route_table_id}",
          resource="route-table"),
    Cause("dynamodb_route_missing",
          "The route table {route_table_id} of this subnet has no route to the DynamoDB prefix list {prefix_list_id} "
          "through the gateway endpoint {endpoint_id}{other_tables}",
          "Associate the DynamoDB gateway endpoint with this subnet's route table",
          "aws ec2 modify-vpc-endpoint --vpc-endpoint-id {endpoint_id} --add-route-table-ids {route_table_id}",
          resource="route-table"),
    Cause("dynamodb_sg_no_outbound_443",
          "DynamoDB at {ip} did not answer and the instance's security group {sg_ids} has no outbound TCP 443 rule "
          "to the DynamoDB prefix list {prefix_list_id} (or a CIDR that holds DynamoDB's addresses)",
          "Add an outbound rule TCP 443 to the DynamoDB prefix list on the instance's security group (network ACLs "
          "cannot reference prefix lists: they need the list's CIDRs)",
          "aws ec2 authorize-security-group-egress --group-id {sg_id} --ip-permissions "
          "IpProtocol=tcp,FromPort=443,ToPort=443,PrefixListIds=[{{PrefixListId={prefix_list_id}}}]",
          resource="security-group"),
    Cause("dynamodb_path_blocked",
          "DynamoDB at {ip} did not answer although the route table {route_table_id} sends the DynamoDB prefix list "
          "to the gateway endpoint {endpoint_id} and the instance security group allows it: a network ACL, a host "
          "firewall or a proxy drops the traffic",
          "Check the subnet's network ACL (outbound TCP 443 and inbound TCP 1024-65535 for each CIDR of the DynamoDB "
          "prefix list: NACLs cannot reference prefix lists) and any host firewall or proxy",
          resource="network-acl"),
    Cause("dynamodb_no_answer",
          "DynamoDB at {ip} did not answer TCP 443: something drops the packets, as a VPC does without a route or "
          "an allowing rule; which one is not proven here ({why}). In order of likelihood: {order}",
          "1) Associate the DynamoDB gateway endpoint with this subnet's route table (aws ec2 modify-vpc-endpoint "
          "--vpc-endpoint-id <vpce-id> --add-route-table-ids {route_table_id}); 2) allow outbound TCP 443 to the "
          "DynamoDB prefix list on the instance's security group (aws ec2 authorize-security-group-egress --group-id "
          "{sg_id} --ip-permissions IpProtocol=tcp,FromPort=443,ToPort=443,PrefixListIds=[{{PrefixListId="
          "{prefix_list_id}}}]; the id: aws ec2 describe-prefix-lists --filters Name=prefix-list-name,"
          "Values=com.amazonaws.{region}.dynamodb); 3) network ACLs cannot reference prefix lists: the subnet's NACL "
          "must allow DynamoDB's CIDRs out on TCP 443 and back in on TCP 1024-65535",
          resource="route-table"),
    Cause("dynamodb_access_denied_endpoint_policy",
          "DynamoDB denied {action} because the gateway endpoint's policy does not allow it ({error})",
          "Allow {action} on {resource} in the DynamoDB gateway endpoint's policy",
          "aws ec2 modify-vpc-endpoint --vpc-endpoint-id {endpoint_id} --policy-document file://policy.json",
          resource="gateway-endpoint"),
    Cause("dynamodb_access_denied_iam",
          "DynamoDB denied {action} ({error}): the instance profile's role lacks the permission",
          "Grant the role {action} on {resource} (an IAM policy on the instance profile's role)",
          resource="role"),
    Cause("dynamodb_access_denied",
          "DynamoDB denied {action} ({error}): the role lacks the permission, or the endpoint policy (or an SCP, a "
          "permissions boundary, a table's resource policy) denies it",
          "Grant the role {action} on {resource}, and check the DynamoDB gateway endpoint's policy",
          resource="role"),
    Cause("dynamodb_table_not_found",
          "DynamoDB in {region} has no table {table} ({error}): the name is wrong, or the table is in another "
          "region — a gateway endpoint reaches only its own region's DynamoDB",
          "Fix dynamodb.table in the config, or use a table in {region} (another region needs a NAT, or an interface "
          "endpoint there reached through peering)",
          resource="table"),
    Cause("dynamodb_table_other_region",
          "The table {table} is in {table_region}, not {region}: a gateway endpoint reaches only its own region's "
          "DynamoDB",
          "Use a table in {region}, or reach {table_region} another way (an interface endpoint there via peering, "
          "or a NAT)",
          resource="table"),
    Cause("dynamodb_no_credentials",
          "No AWS credentials for the DynamoDB call: {error}",
          "Attach an instance profile (or configure credentials) with DynamoDB permissions",
          resource="instance"),
    Cause("dynamodb_error",
          "DynamoDB answered {error}",
          "See the error code in the Amazon DynamoDB API reference",
          resource="table"),
    # --- isolation -------------------------------------------------------------------------------
    Cause("internet_path",
          "A TCP connection to {host}:{port} ({ip}) succeeded: this instance has a path to the internet "
          "(an Internet Gateway or NAT route, or a proxy)",
          "Remove the 0.0.0.0/0 route to the IGW/NAT from the subnet's route table (VPC console: Route tables > Routes)",
          "aws ec2 delete-route --route-table-id {route_table_id} --destination-cidr-block 0.0.0.0/0",
          resource="route-table"),
    Cause("internet_path_refused",
          "TCP {port} to {host} ({ip}) was refused: an RST came back in {rst_ms} ms, so the SYN reached something "
          "that answered. A VPC without an internet path drops it (a timeout); an RST means an Internet Gateway "
          "or NAT route exists and the host refuses the port, or a firewall or proxy on the way rejects "
          "instead of dropping",
          "Look for a 0.0.0.0/0 route to an igw-/nat- in the subnet's route table and remove it. With none, find "
          "what answers: an RST well under a millisecond comes from this instance itself (a REJECT rule: nft list "
          "ruleset, iptables -S) or a local proxy; ip route get {ip} shows the way out",
          "aws ec2 describe-route-tables --filters Name=association.subnet-id,Values={subnet_id} "
          "--query 'RouteTables[].Routes'",
          resource="route-table"),
]
