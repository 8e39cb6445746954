"""Causes: The resolver, interface endpoints (DNS, identity, reachability, TLS) and NACLs. Part of the one catalogue in ``checks.causes`` (CAUSES keeps
this order: instance, network, gateway, aws)."""
from __future__ import annotations

from typing import List

from .causetype import Cause

CAUSES: List[Cause] = [
    # --- resolver ------------------------------------------------------------------------------
    Cause("resolver_unreachable",
          "The Amazon resolver {resolver} does not answer DNS queries: the VPC attribute enableDnsSupport is "
          "false, or UDP/TCP 53 to it is blocked",
          "Enable DNS resolution on the VPC (VPC console: Actions > Edit VPC settings > Enable DNS resolution)",
          "aws ec2 modify-vpc-attribute --vpc-id {vpc_id} --enable-dns-support '{{\"Value\":true}}'",
          resource="vpc"),
    Cause("resolver_error",
          "The Amazon resolver {resolver} answered with an error ({rcode})",
          "Check the VPC's DNS settings (enableDnsSupport) and any Route 53 Resolver rules or DNS Firewall on the VPC",
          resource="vpc"),
    Cause("resolver_slow",
          "The Amazon resolver {resolver} answered slowly ({latency_ms} ms)",
          "Look for DNS throttling (1024 packets/s per ENI to the resolver) or a slow forwarding rule; cache DNS locally",
          resource="vpc"),
    Cause("resolver_slow_beyond_timeout",
          "The Amazon resolver {resolver} answers, but only after {latency_ms} ms: slower than the {timeout_s} s one "
          "query waits here, and {clients}. It is slow, not switched off (enableDnsSupport is not the cause: it "
          "answered)",
          "Find what delays it: DNS throttling (the resolver takes 1024 packets/s per ENI; a local cache such as "
          "systemd-resolved or nscd cuts the rate), a Route 53 Resolver forwarding rule whose target servers answer "
          "slowly, or DNS Firewall; meanwhile raise the client timeout (options timeout: in /etc/resolv.conf) and "
          "timeouts.dns_s here",
          resource="vpc"),
    Cause("system_dns_differs",
          "The system resolver ({source}) answers {host} with {system_answers}, not the endpoint addresses "
          "{amazon_answers} that the Amazon resolver gives: programs on this instance, the SSM agent included, "
          "will not use the endpoint",
          "Remove the {source} entry for {host}, or make the custom DNS server forward {host} to the Amazon resolver",
          resource="instance"),
    Cause("custom_dns_public_answers",
          "The nameserver {nameserver} in {path} is not the Amazon resolver and answers {hosts} with public "
          "addresses ({system_answers}) where the Amazon resolver {resolver} gives the endpoints' private ones "
          "({amazon_answers}): it does not forward amazonaws.com to the VPC resolver, so programs here, the SSM "
          "agent included, bypass the endpoints. {origin}",
          "Give the VPC a DHCP option set with domain-name-servers=AmazonProvidedDNS (if the account has none: aws "
          "ec2 create-dhcp-options --dhcp-configurations Key=domain-name-servers,Values=AmazonProvidedDNS); running "
          "instances take it at their next DHCP lease renewal (sudo networkctl renew <interface>, or reboot). Or "
          "keep {nameserver} and forward amazonaws.com on it to the VPC resolver {vpc_resolver} (a conditional "
          "forwarder; from outside the VPC through a Route 53 Resolver inbound endpoint)",
          "aws ec2 associate-dhcp-options --dhcp-options-id {amazon_dhcp_options_id} --vpc-id {vpc_id}",
          resource="dhcp-options"),
    # --- interface endpoints: DNS --------------------------------------------------------------
    Cause("endpoint_missing",
          "There is no interface endpoint for {service} in this VPC: {host} resolves to public addresses "
          "{answers}, which are unreachable without an IGW or NAT",
          "Create the interface endpoint com.amazonaws.{region}.{service} with Private DNS enabled in the instance's subnets",
          "aws ec2 create-vpc-endpoint --vpc-id {vpc_id} --vpc-endpoint-type Interface --service-name "
          "com.amazonaws.{region}.{service} --subnet-ids {subnet_id} --private-dns-enabled",
          resource="endpoint"),
    Cause("private_dns_disabled",
          "The interface endpoint {endpoint_id} for {service} has Private DNS disabled: {host} still resolves "
          "to public addresses {answers}",
          "Enable Private DNS names on the endpoint (VPC console: Endpoints > Actions > Modify private DNS name)",
          "aws ec2 modify-vpc-endpoint --vpc-endpoint-id {endpoint_id} --private-dns-enabled",
          resource="endpoint"),
    Cause("dns_hostnames_disabled",
          "The VPC attribute enableDnsHostnames is false, so the endpoints' Private DNS cannot apply: "
          "{host} resolves to public addresses {answers}",
          "Enable DNS hostnames on the VPC (VPC console: Actions > Edit VPC settings > Enable DNS hostnames)",
          "aws ec2 modify-vpc-attribute --vpc-id {vpc_id} --enable-dns-hostnames '{{\"Value\":true}}'",
          resource="vpc"),
    Cause("dns_support_disabled",
          "The VPC attribute enableDnsSupport is false: the Amazon resolver does not answer",
          "Enable DNS resolution on the VPC (VPC console: Actions > Edit VPC settings > Enable DNS resolution)",
          "aws ec2 modify-vpc-attribute --vpc-id {vpc_id} --enable-dns-support '{{\"Value\":true}}'",
          resource="vpc"),
    Cause("private_dns_not_effective",
          "{host} resolves to public addresses {answers}: the interface endpoint for {service} is missing, "
          "its Private DNS is off, or the VPC's enableDnsHostnames is false (the EC2 API could not tell which)",
          "Create the interface endpoint com.amazonaws.{region}.{service} with Private DNS enabled, and enable "
          "both DNS resolution and DNS hostnames on the VPC",
          resource="endpoint"),
    Cause("vpc_dns_attribute_before_private_dns",
          "{host} resolves to public addresses {answers}: the VPC's {attributes_are} false and {endpoint_state}; "
          "AWS refuses Private DNS on any endpoint until the attribute is true",
          "First set {attributes} to true on {vpc_id} (until then AWS answers the Private DNS change with "
          "\"InvalidParameter: Enabling private DNS requires both enableDnsSupport and enableDnsHostnames VPC "
          "attributes set to true for {vpc_id}\"), then {endpoint_step}",
          "{attribute_cli} && {endpoint_cli}",
          resource="vpc"),
    Cause("dns_shadow_zone",
          "{host} is NXDOMAIN at {resolver} although public DNS has it: a Route 53 private hosted zone (or a "
          "Resolver rule) for {zone} associated with the VPC answers for that whole namespace and lacks it. "
          "NXDOMAIN: {failing}; resolving under {zone}: {resolving}",
          "Find the zone (aws route53 list-hosted-zones-by-vpc; Resolver rules: aws route53resolver "
          "list-resolver-rule-associations) and delete or disassociate {zone}, or add the missing records to it "
          "(for S3: a wildcard *.s3.<region> record for bucket names); for interface endpoints use the "
          "endpoint's own Private DNS instead of a hand-made zone",
          "aws route53 list-hosted-zones-by-vpc --vpc-id {vpc_id} --vpc-region {region}",
          resource="vpc"),
    Cause("dns_shadow_zone_public_record",
          "{host} resolves to public addresses {answers} from a Route 53 private hosted zone (or a Resolver rule) "
          "for {zone} associated with the VPC: names under it that it lacks are NXDOMAIN ({failing}), so public DNS "
          "is not asked there and this answer is the zone's own record; the endpoint's Private DNS is not in effect "
          "for {host}",
          "Delete or disassociate {zone} (aws route53 list-hosted-zones-by-vpc finds it), or remove its record for "
          "{host}; then create the interface endpoint com.amazonaws.{region}.{service} with Private DNS (its own "
          "zone is more specific and wins)",
          "aws route53 list-hosted-zones-by-vpc --vpc-id {vpc_id} --vpc-region {region}",
          resource="vpc"),
    Cause("dns_nxdomain",
          "{host} does not exist according to {resolver} (NXDOMAIN)",
          "Check the service name and region; a Route 53 private hosted zone for {zone} without this record "
          "shadows the public name — delete that zone or add the record",
          resource="vpc"),
    Cause("dns_no_answer",
          "{resolver} gives no address for {host} ({rcode})",
          "Check Route 53 Resolver rules and private hosted zones associated with the VPC",
          resource="vpc"),
    Cause("endpoint_ipv4_only",
          "This instance is in an IPv6-only subnet (no IPv4 address), but {host} has only IPv4 answers ({answers}; "
          "{aaaa}): the {service} endpoint serves IPv4 only (IpAddressType ipv4)",
          "Make the endpoint dual-stack with AAAA records in Private DNS (every endpoint subnet needs an IPv6 CIDR)",
          "aws ec2 modify-vpc-endpoint --vpc-endpoint-id {endpoint_id} --ip-address-type dualstack "
          "--dns-options DnsRecordIpType=dualstack",
          resource="endpoint"),
    Cause("dns_timeout",
          "{resolver} did not answer the query for {host} within {timeout_s} s",
          "Check that enableDnsSupport is true on the VPC and that UDP/TCP 53 to the resolver is allowed",
          resource="vpc"),
    Cause("dns_mixed_answers",
          "{host} resolves to a mix of private and public addresses ({answers})",
          "Check for a Route 53 private hosted zone or /etc/hosts entry that shadows the endpoint's Private DNS",
          resource="vpc"),
    # --- interface endpoints: identity ----------------------------------------------------------
    Cause("eni_mismatch",
          "{host} resolves to {answers}, but the endpoint {endpoint_id}'s ENIs have {eni_ips}: a stale or "
          "foreign DNS answer (a private hosted zone, /etc/hosts, or a deleted endpoint)",
          "Find what serves the old answer (Route 53 private hosted zones associated with the VPC, /etc/hosts, "
          "a custom DNS server) and remove it",
          resource="endpoint"),
    Cause("endpoint_not_available",
          "The endpoint {endpoint_id} for {service} is in state {state}, not available",
          "Wait for it to become available, or accept/recreate it",
          "aws ec2 describe-vpc-endpoints --vpc-endpoint-ids {endpoint_id}",
          resource="endpoint"),
    # --- interface endpoints: reachability -----------------------------------------------------
    Cause("tcp_timeout",
          "TCP 443 to {ip} timed out: the endpoint's security group lacks inbound TCP 443 from the "
          "instance, or the instance's security group lacks outbound TCP 443, or a network ACL drops it",
          "Allow inbound TCP 443 from the instance's security group (or the subnet CIDR) on the endpoint's "
          "security group, and outbound TCP 443 on the instance's security group; check the subnet's NACL",
          resource="endpoint-eni|endpoint"),
    Cause("endpoint_sg_no_inbound_443",
          "TCP 443 to {ip} timed out and the endpoint's security group {sg_ids} has no inbound TCP 443 rule "
          "that admits the instance",
          "Add an inbound rule TCP 443 from the instance's security group or the subnet CIDR",
          "aws ec2 authorize-security-group-ingress --group-id {sg_id} --protocol tcp --port 443 --cidr {subnet_cidr}",
          resource="security-group|endpoint"),
    Cause("endpoint_sg_no_inbound_443_ipv6",
          "TCP 443 to {ip} (IPv6) timed out and the endpoint's security group {sg_ids} has no inbound TCP 443 rule "
          "that admits the instance's IPv6 address {source} (IPv4 CIDR rules do not cover IPv6)",
          "Add an inbound rule TCP 443 from the instance's security group or the subnet's IPv6 CIDR",
          "aws ec2 authorize-security-group-ingress --group-id {sg_id} --ip-permissions "
          "IpProtocol=tcp,FromPort=443,ToPort=443,Ipv6Ranges=[{{CidrIpv6={subnet_ipv6_cidr}}}]",
          resource="security-group|endpoint"),
    Cause("instance_sg_no_outbound_443",
          "TCP 443 to {ip} timed out and the instance's security group {sg_ids} has no outbound TCP 443 rule",
          "Add an outbound rule TCP 443 (to the endpoints' security group, the VPC CIDR or 0.0.0.0/0)",
          "aws ec2 authorize-security-group-egress --group-id {sg_id} --ip-permissions "
          "IpProtocol=tcp,FromPort=443,ToPort=443,IpRanges=[{{CidrIp={vpc_cidr}}}]",
          resource="security-group"),
    Cause("tcp_refused",
          "TCP 443 to {ip} was refused: nothing listens there, so the DNS answer is stale (the ENI no longer "
          "belongs to an endpoint)",
          "Find what serves the stale answer (private hosted zone, /etc/hosts, custom DNS) and remove it",
          resource="endpoint-eni|endpoint"),
    Cause("tcp_unreachable",
          "TCP 443 to {ip} failed at once ({error}): no route from the instance",
          "Check the instance's routes and the subnet's route table",
          resource="instance"),
    Cause("tls_failed",
          "TLS with {host} at {ip} failed ({error}): a proxy or firewall intercepts TLS, or the address "
          "belongs to a different service",
          "Remove TLS interception for AWS endpoints, or trust its CA via AWS_CA_BUNDLE / ca_bundle; check "
          "that {host} resolves to this service's endpoint",
          resource="endpoint-eni|endpoint"),
    # TLS after TCP, told apart by checks/tlsprobe.py (issuer read without trusting it; a small-MSS retry)
    Cause("tls_foreign_issuer",
          "The certificate presented for {host} at {ip} is issued by {issuer}, not by Amazon, and verifies "
          "against nothing trusted here ({error}): a TLS-inspecting firewall or proxy ({issuer_org}) answers "
          "in the endpoint's place",
          "Exempt *.amazonaws.com (the endpoint names) from TLS inspection on that appliance or proxy, or add "
          "its CA certificate to the trust store the SSM agent uses (Amazon Linux/RHEL: copy it to "
          "/etc/pki/ca-trust/source/anchors/ and run sudo update-ca-trust; Debian/Ubuntu: "
          "/usr/local/share/ca-certificates/ and sudo update-ca-certificates) and, for the AWS CLI and SDKs, "
          "to AWS_CA_BUNDLE / ca_bundle",
          resource="endpoint-eni|endpoint"),
    Cause("tls_ca_bundle_broken",
          "The certificate for {host} at {ip} is issued by Amazon ({issuer}) but does not verify against this "
          "instance's CA bundle ({bundle}: {error}): the bundle lacks Amazon's root CAs, or is empty or damaged",
          "Repair the CA bundle: sudo dnf reinstall -y ca-certificates && sudo update-ca-trust (Debian/Ubuntu: "
          "sudo apt-get install --reinstall ca-certificates && sudo update-ca-certificates); a custom ca_bundle "
          "/ AWS_CA_BUNDLE replaces the system store for the AWS CLI and SDKs, so it must hold Amazon Root CA "
          "1-4 too (https://www.amazontrust.com/repository/)",
          resource="instance"),
    Cause("tls_path_mtu",
          "TCP 443 to {ip} connects but the TLS handshake for {host} stalls ({error}); with a small MSS ({mss}) "
          "it completes: packets bigger than that are dropped on the way back and no ICMP \"fragmentation "
          "needed\" reaches the instance (a path-MTU black hole; {iface} has MTU {mtu})",
          "Let ICMP type 3 code 4 (Destination Unreachable: fragmentation needed and DF set) through, inbound and "
          "outbound, in the subnets' network ACLs and on every firewall or appliance in the path, so Path MTU "
          "Discovery works; or lower the instance's MTU to what the path carries: "
          "sudo ip link set dev {iface} mtu 1500",
          resource="endpoint-eni|endpoint"),
    Cause("tls_handshake_stalled",
          "TCP 443 to {ip} connects but no TLS answer for {host} comes back ({error}), not even with a small "
          "MSS ({mss}): something in the path accepts TCP and then holds the TLS exchange",
          "Find what answers TCP for {ip} without passing TLS (a firewall, transparent proxy or inspection "
          "appliance on the route to the endpoint; its logs show the held flow) and let TLS to the endpoint "
          "through",
          resource="endpoint-eni|endpoint"),
    Cause("az_unreachable",
          "{service}: {bad_count} of {total} endpoint ENIs do not accept connections ({bad_ips}); clients "
          "that pick those addresses stall",
          "Fix the security group / NACL for the ENIs in the affected AZ(s), or remove the endpoint's subnet there",
          resource="endpoint-eni|endpoint"),
    Cause("reach_via_internet",
          "{service} works, but over the internet: {host}'s public addresses ({ips}) accept TLS from here, so the "
          "traffic leaves through an Internet Gateway or NAT route (or a proxy), not through an interface endpoint",
          "Make the private path work (see dns.{service}'s fix), then remove the internet route; until then "
          "Session Manager and Run Command depend on the internet path",
          resource="endpoint"),
    Cause("reach_via_pinned_address",
          "{service} works only because {source} pins {host} to {ips} (an endpoint address that accepts TLS): "
          "DNS itself gives public addresses, so anything that does not read {source} — other instances, "
          "containers with their own hosts file — fails",
          "Fix Private DNS (see dns.{service}'s fix) and remove the {source} entry for {host}; a pin breaks "
          "silently when the endpoint's ENIs change",
          resource="endpoint"),
    Cause("nacl_blocks",
          "The network ACL {nacl_id} of subnet {subnet_id} drops the {leg} of TCP 443 with {ip}: {direction} "
          "TCP port {port} {arrow} {peer} — {rule_words}. NACLs are stateless: the replies to the instance's "
          "ephemeral ports need entries of their own",
          "Add an {direction} entry to {nacl_id} allowing TCP {ports} {arrow} {cidr}{scope}, numbered below any "
          "entry that matches first",
          "aws ec2 create-network-acl-entry --network-acl-id {nacl_id} --{flag} --rule-number <number below "
          "{rule}> --protocol tcp --port-range From={from_port},To={to_port} --cidr-block {cidr} --rule-action allow",
          resource="network-acl"),
    Cause("nacl_suspected",
          "{service}: the endpoint ENIs in this instance's own subnet ({subnet_cidr}) accept connections, the ones "
          "in other subnets ({bad_ips}) time out: a network ACL filters traffic between subnets (most often the "
          "return traffic to ephemeral ports 1024-65535); a security group would not single out other subnets",
          "Check the NACLs of this subnet and of the endpoint's subnets (VPC console: Network ACLs): inbound and "
          "outbound TCP 443 between the subnets, and TCP 1024-65535 for the replies; allow ec2:DescribeNetworkAcls "
          "to have the entry named",
          "aws ec2 describe-network-acls --filters Name=association.subnet-id,Values={subnet_id}",
          resource="network-acl"),
    Cause("stale_answer_refused",
          "{service}: {bad_ips} refuse TCP 443 while the other answers accept it: nothing listens there, so DNS "
          "hands out a stale record next to the endpoint's ENIs; clients that pick it fail",
          "Find what serves the stale answer (a Route 53 private hosted zone record, a custom DNS server, "
          "/etc/hosts) and remove it",
          resource="endpoint-eni|endpoint"),
]
