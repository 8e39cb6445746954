"""Every cause the agent can name, with its fix, in the words of the VPC console and API.

A finding refers to a cause by its stable code (JSON ``cause_code``; the fleet view and the
troubleshooting table group by it). ``explain(code, **params)`` fills the templates; a parameter
that is not known is simply left out of the ``cli`` command (the fix then names the console step).
Adding a cause: add it here, nowhere else.
"""
from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Dict, Mapping, Optional


@dataclass(frozen=True)
class Cause:
    code: str
    cause: str  # what is most likely wrong (str.format with params)
    fix: str  # what to change (str.format with params)
    cli: Optional[str] = None  # exact AWS CLI command, when every {param} is known


CAUSES: Dict[str, Cause] = {c.code: c for c in [
    # --- IMDS and instance -------------------------------------------------------------------
    Cause("imds_disabled",
          "IMDS answered 403 Forbidden to the IMDSv2 token request: the instance metadata endpoint is disabled",
          "Enable the metadata endpoint (EC2 console: Instance > Actions > Instance settings > Modify instance "
          "metadata options > Metadata: Enabled); the SSM agent needs IMDS for its credentials",
          "aws ec2 modify-instance-metadata-options --instance-id {instance_id} --http-endpoint enabled --http-tokens required"),
    Cause("imds_hop_limit",
          "IMDS did not answer the IMDSv2 token request in time: the metadata endpoint is unreachable from here, "
          "or the response hop limit is too low (the default 1 does not reach a container)",
          "Run on the instance itself, or raise the PUT response hop limit to 2 for containers; check that "
          "nothing (iptables, a proxy) blocks 169.254.169.254",
          "aws ec2 modify-instance-metadata-options --instance-id {instance_id} --http-put-response-hop-limit 2"),
    Cause("imds_unreachable",
          "IMDS at 169.254.169.254 refused or failed the connection ({error})",
          "Check that the metadata endpoint is enabled and that no local firewall or proxy blocks 169.254.169.254:80"),
    Cause("imds_ipv6_only",
          "IMDS answers only over IPv6 at [fd00:ec2::254]; 169.254.169.254 failed ({error}): {agent_note}",
          "Give the SSM agent the IPv6 endpoint: a systemd drop-in for amazon-ssm-agent with "
          "Environment=AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6, then systemctl daemon-reload and restart it"),
    Cause("imds_ipv6_disabled",
          "IMDS is unreachable: this instance has no IPv4 route to 169.254.169.254 (an IPv6-only subnet) and "
          "[fd00:ec2::254] does not answer ({error}); the IPv6 endpoint is disabled by default, also in IPv6-only subnets",
          "Enable the IMDS IPv6 endpoint (EC2 console: Instance > Actions > Instance settings > Modify instance "
          "metadata options > IPv6 endpoint: Enabled; Nitro instances only); the SSM agent needs IMDS for its credentials",
          "aws ec2 modify-instance-metadata-options --instance-id {instance_id} --http-protocol-ipv6 enabled "
          "--http-endpoint enabled"),
    Cause("imds_bad_answer",
          "IMDS gave an answer that is not what the metadata service returns ({error})",
          "Check for a proxy or local service intercepting 169.254.169.254; set the facts in the config to run without IMDS"),
    Cause("public_ip_assigned",
          "The instance has a public IPv4 address ({public_ipv4}); a private instance should have none",
          "Disable auto-assign public IPv4 on the subnet and launch without a public IP (or disassociate the Elastic IP)",
          "aws ec2 modify-subnet-attribute --subnet-id {subnet_id} --no-map-public-ip-on-launch"),
    Cause("no_instance_profile",
          "No instance profile is attached: the SSM agent has no credentials to register with Systems Manager",
          "Attach an instance profile whose role has the AmazonSSMManagedInstanceCore policy",
          "aws ec2 associate-iam-instance-profile --instance-id {instance_id} --iam-instance-profile Name=<profile-name>"),
    Cause("ssm_agent_not_running",
          "The SSM agent process (amazon-ssm-agent) is not running",
          "Start it: sudo systemctl enable --now amazon-ssm-agent"),
    Cause("ssm_agent_endpoints_failing",
          "The SSM agent runs but holds no connection to the endpoints, and this instance cannot reach them "
          "either ({failing} failed): the agent is waiting for the network, not stuck",
          "Fix the failing {failing} finding(s) first; the agent reconnects by itself (restart it if it has "
          "not within a few minutes)"),
    Cause("ssm_agent_connected_path_failing",
          "The SSM agent still holds connections made earlier, but its path fails now ({failing} failed): "
          "once they drop (an agent restart, a network blip, an idle timeout) it will not reconnect",
          "Fix the failing {failing} finding(s); the agent needs no action of its own"),
    Cause("ssm_agent_not_connected",
          "The SSM agent runs but holds no connection to the endpoint ENIs ({expected}); it probably started "
          "before the endpoints existed and keeps retrying the old path",
          "Restart the agent (sudo systemctl restart amazon-ssm-agent) or reboot the instance after creating the endpoints"),
    # --- the SSM agent from its own evidence (checks/ssmagent.py) -------------------------------
    Cause("ssm_agent_not_accepted",
          "The SSM agent runs but holds no connection, and this run's own {failing} check(s) fail: AWS does not "
          "accept this instance (its credentials, clock or policies), so the agent backs off; that is the cause, "
          "not the agent",
          "Fix the {failing} finding(s) first; the agent retries by itself (a hibernating one within up to an hour: "
          "restart it only after the fix to skip that wait)"),
    Cause("ssm_agent_not_root",
          "The SSM agent (pid {pid}) runs as {user} (uid {uid}), not root: it cannot write /var/lib/amazon/ssm, "
          "create ssm-user or run commands as root",
          "Remove the User=/Group= lines from the agent's unit drop-ins (systemctl cat amazon-ssm-agent), then: "
          "sudo systemctl daemon-reload && sudo systemctl restart amazon-ssm-agent"),
    Cause("ssm_agent_too_old",
          "SSM agent {version} is older than {minimum}, the first version with {feature}",
          "Update the agent: sudo yum install -y amazon-ssm-agent (or the AWS-UpdateSSMAgent document), then "
          "sudo systemctl restart amazon-ssm-agent"),
    Cause("ssm_agent_needs_ec2messages",
          "SSM agent {version} receives Run Command only through ec2messages (ssmmessages from 3.1.821.0 on), and "
          "{failing} fails here: Run Command cannot reach this agent",
          "Fix the {failing} finding (create the ec2messages interface endpoint with Private DNS), or update the "
          "agent: sudo yum install -y amazon-ssm-agent && sudo systemctl restart amazon-ssm-agent"),
    Cause("ssm_agent_proxy_imds",
          "The SSM agent's environment sets a proxy ({proxy}, from {source}) and no_proxy does not exempt "
          "169.254.169.254: it asks IMDS for its credentials through the proxy and gets none",
          "Add no_proxy for IMDS to the agent's drop-in: sudo systemctl edit amazon-ssm-agent → [Service] "
          "Environment=\"no_proxy=169.254.169.254\" (keep your other entries), then sudo systemctl daemon-reload "
          "&& sudo systemctl restart amazon-ssm-agent"),
    Cause("ssm_agent_proxy_endpoints",
          "The SSM agent sends {hosts} through the proxy {proxy} (from {source}), not to the endpoints this "
          "check tested: the agent's path depends on that proxy",
          "With interface endpoints no proxy is needed: add .amazonaws.com to no_proxy in the agent's drop-in "
          "(sudo systemctl edit amazon-ssm-agent), then sudo systemctl daemon-reload && sudo systemctl restart "
          "amazon-ssm-agent"),
    Cause("ssm_agent_waits_for",
          "The SSM agent's log shows {symptom}, and this run's own {failing} check(s) fail too: that is the "
          "cause, not the agent",
          "Fix the {failing} finding(s); the agent retries by itself (when hibernating, within its backoff of "
          "up to an hour)"),
    Cause("ssm_agent_hibernating",
          "The SSM agent is hibernating (its log: {line}) although this run finds the credentials, the "
          "endpoints and the service's answer in order: it is stuck in hibernation after the cause was fixed",
          "Restart it: sudo systemctl restart amazon-ssm-agent"),
    Cause("ssm_agent_log_access_denied",
          "The SSM agent's calls are refused: its log says {line} ({policy})",
          "Attach AmazonSSMManagedInstanceCore to the instance role (aws iam attach-role-policy --role-name "
          "<role> --policy-arn arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore); if the message names a VPC "
          "endpoint policy: aws ec2 modify-vpc-endpoint --vpc-endpoint-id <vpce-id> --reset-policy"),
    Cause("ssm_agent_log_credentials",
          "The SSM agent has no valid credentials: its log says {line}",
          "Check the instance profile's role and trust policy (the iam.credentials finding); then sudo "
          "systemctl restart amazon-ssm-agent"),
    Cause("ssm_agent_log_clock",
          "AWS refuses the SSM agent's signatures as too old or too new: its log says {line}",
          "Synchronise the clock: sudo chronyc makestep (chronyc tracking shows the offset), then sudo "
          "systemctl restart amazon-ssm-agent"),
    Cause("ssm_agent_log_no_space",
          "The SSM agent cannot write its files: its log says {line}",
          "Free space on the filesystem of /var/lib/amazon/ssm and /var/log/amazon/ssm (df -h /var/lib/amazon/ssm; "
          "df -i for inodes), then sudo systemctl restart amazon-ssm-agent"),
    Cause("ssm_agent_log_proxy",
          "The SSM agent cannot reach its proxy: its log says {line}",
          "Fix or remove the proxy in the agent's drop-in (systemctl cat amazon-ssm-agent); with interface "
          "endpoints add .amazonaws.com and 169.254.169.254 to no_proxy; then sudo systemctl daemon-reload && "
          "sudo systemctl restart amazon-ssm-agent"),
    Cause("ssm_agent_log_tls",
          "The SSM agent does not trust the certificate it is shown: its log says {line} (TLS inspection by an "
          "appliance or proxy, a CA bundle on the instance that lacks Amazon's roots, or a wrong endpoint; "
          "reach.<service> names which when its handshake fails the same way)",
          "Exempt *.amazonaws.com from TLS inspection (or add .amazonaws.com to the agent's no_proxy), or repair the "
          "instance's CA bundle (sudo dnf reinstall ca-certificates && sudo update-ca-trust); then "
          "sudo systemctl restart amazon-ssm-agent"),
    Cause("ssm_agent_log_network",
          "The SSM agent cannot connect to the service: its log says {line}",
          "Check what the agent resolves for the ssm names (getent hosts ssm.<region>.amazonaws.com) and its "
          "proxy settings; when the checks here pass: sudo systemctl restart amazon-ssm-agent"),
    Cause("ssm_agent_disk_full",
          "{path} has {free} free ({inodes} free inodes): the SSM agent cannot write documents, state or logs",
          "Free space: df -h {path}; df -i {path}; remove old files (e.g. sudo find /var/lib/amazon/ssm -path "
          "'*/document/orchestration/*' -mtime +14 -delete; sudo journalctl --vacuum-size=200M), then sudo "
          "systemctl restart amazon-ssm-agent"),
    Cause("ssm_agent_disk_low",
          "{path} has only {free} free ({percent}% of the filesystem)",
          "Free space before the agent runs out: df -h {path}; du -sh /var/lib/amazon/ssm /var/log/amazon/ssm"),
    Cause("ssm_agent_config_region",
          "{file} sets {key} = {value}, but the instance is in {region}: the agent talks to another region's "
          "service, which does not know this instance",
          "Empty {key} in {file} (the agent then asks IMDS), then sudo systemctl restart amazon-ssm-agent"),
    Cause("ssm_agent_config_endpoint",
          "{file} overrides {overrides}: the agent uses those names, not the endpoints this run checked (a "
          "deleted endpoint's vpce-… name or another region's keeps the agent away)",
          "Empty the override(s) in {file} unless you need them (Private DNS makes the default names private), "
          "then sudo systemctl restart amazon-ssm-agent"),
    Cause("ssm_agent_config_invalid",
          "The agent's config {file} cannot be used: {error}",
          "Fix the file (python3 -m json.tool {file}) or remove it to use the defaults, then sudo systemctl "
          "restart amazon-ssm-agent"),
    # --- resolver ------------------------------------------------------------------------------
    Cause("resolver_unreachable",
          "The Amazon resolver {resolver} does not answer DNS queries: the VPC attribute enableDnsSupport is "
          "false, or UDP/TCP 53 to it is blocked",
          "Enable DNS resolution on the VPC (VPC console: Actions > Edit VPC settings > Enable DNS resolution)",
          "aws ec2 modify-vpc-attribute --vpc-id {vpc_id} --enable-dns-support '{{\"Value\":true}}'"),
    Cause("resolver_error",
          "The Amazon resolver {resolver} answered with an error ({rcode})",
          "Check the VPC's DNS settings (enableDnsSupport) and any Route 53 Resolver rules or DNS Firewall on the VPC"),
    Cause("resolver_slow",
          "The Amazon resolver {resolver} answered slowly ({latency_ms} ms)",
          "Look for DNS throttling (1024 packets/s per ENI to the resolver) or a slow forwarding rule; cache DNS locally"),
    Cause("resolver_slow_beyond_timeout",
          "The Amazon resolver {resolver} answers, but only after {latency_ms} ms: slower than the {timeout_s} s one "
          "query waits here, and {clients}. It is slow, not switched off (enableDnsSupport is not the cause: it "
          "answered)",
          "Find what delays it: DNS throttling (the resolver takes 1024 packets/s per ENI; a local cache such as "
          "systemd-resolved or nscd cuts the rate), a Route 53 Resolver forwarding rule whose target servers answer "
          "slowly, or DNS Firewall; meanwhile raise the client timeout (options timeout: in /etc/resolv.conf) and "
          "timeouts.dns_s here"),
    Cause("system_dns_differs",
          "The system resolver ({source}) answers {host} with {system_answers}, not the endpoint addresses "
          "{amazon_answers} that the Amazon resolver gives: programs on this instance, the SSM agent included, "
          "will not use the endpoint",
          "Remove the {source} entry for {host}, or make the custom DNS server forward {host} to the Amazon resolver"),
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
          "aws ec2 associate-dhcp-options --dhcp-options-id {amazon_dhcp_options_id} --vpc-id {vpc_id}"),
    # --- interface endpoints: DNS --------------------------------------------------------------
    Cause("endpoint_missing",
          "There is no interface endpoint for {service} in this VPC: {host} resolves to public addresses "
          "{answers}, which are unreachable without an IGW or NAT",
          "Create the interface endpoint com.amazonaws.{region}.{service} with Private DNS enabled in the instance's subnets",
          "aws ec2 create-vpc-endpoint --vpc-id {vpc_id} --vpc-endpoint-type Interface --service-name "
          "com.amazonaws.{region}.{service} --subnet-ids {subnet_id} --private-dns-enabled"),
    Cause("private_dns_disabled",
          "The interface endpoint {endpoint_id} for {service} has Private DNS disabled: {host} still resolves "
          "to public addresses {answers}",
          "Enable Private DNS names on the endpoint (VPC console: Endpoints > Actions > Modify private DNS name)",
          "aws ec2 modify-vpc-endpoint --vpc-endpoint-id {endpoint_id} --private-dns-enabled"),
    Cause("dns_hostnames_disabled",
          "The VPC attribute enableDnsHostnames is false, so the endpoints' Private DNS cannot apply: "
          "{host} resolves to public addresses {answers}",
          "Enable DNS hostnames on the VPC (VPC console: Actions > Edit VPC settings > Enable DNS hostnames)",
          "aws ec2 modify-vpc-attribute --vpc-id {vpc_id} --enable-dns-hostnames '{{\"Value\":true}}'"),
    Cause("dns_support_disabled",
          "The VPC attribute enableDnsSupport is false: the Amazon resolver does not answer",
          "Enable DNS resolution on the VPC (VPC console: Actions > Edit VPC settings > Enable DNS resolution)",
          "aws ec2 modify-vpc-attribute --vpc-id {vpc_id} --enable-dns-support '{{\"Value\":true}}'"),
    Cause("private_dns_not_effective",
          "{host} resolves to public addresses {answers}: the interface endpoint for {service} is missing, "
          "its Private DNS is off, or the VPC's enableDnsHostnames is false (the EC2 API could not tell which)",
          "Create the interface endpoint com.amazonaws.{region}.{service} with Private DNS enabled, and enable "
          "both DNS resolution and DNS hostnames on the VPC"),
    Cause("vpc_dns_attribute_before_private_dns",
          "{host} resolves to public addresses {answers}: the VPC's {attributes_are} false and {endpoint_state}; "
          "AWS refuses Private DNS on any endpoint until the attribute is true",
          "First set {attributes} to true on {vpc_id} (until then AWS answers the Private DNS change with "
          "\"InvalidParameter: Enabling private DNS requires both enableDnsSupport and enableDnsHostnames VPC "
          "attributes set to true for {vpc_id}\"), then {endpoint_step}",
          "{attribute_cli} && {endpoint_cli}"),
    Cause("dns_shadow_zone",
          "{host} is NXDOMAIN at {resolver} although public DNS has it: a Route 53 private hosted zone (or a "
          "Resolver rule) for {zone} associated with the VPC answers for that whole namespace and lacks it. "
          "NXDOMAIN: {failing}; resolving under {zone}: {resolving}",
          "Find the zone (aws route53 list-hosted-zones-by-vpc; Resolver rules: aws route53resolver "
          "list-resolver-rule-associations) and delete or disassociate {zone}, or add the missing records to it "
          "(for S3: a wildcard *.s3.<region> record for bucket names); for interface endpoints use the "
          "endpoint's own Private DNS instead of a hand-made zone",
          "aws route53 list-hosted-zones-by-vpc --vpc-id {vpc_id} --vpc-region {region}"),
    Cause("dns_shadow_zone_public_record",
          "{host} resolves to public addresses {answers} from a Route 53 private hosted zone (or a Resolver rule) "
          "for {zone} associated with the VPC: names under it that it lacks are NXDOMAIN ({failing}), so public DNS "
          "is not asked there and this answer is the zone's own record; the endpoint's Private DNS is not in effect "
          "for {host}",
          "Delete or disassociate {zone} (aws route53 list-hosted-zones-by-vpc finds it), or remove its record for "
          "{host}; then create the interface endpoint com.amazonaws.{region}.{service} with Private DNS (its own "
          "zone is more specific and wins)",
          "aws route53 list-hosted-zones-by-vpc --vpc-id {vpc_id} --vpc-region {region}"),
    Cause("dns_nxdomain",
          "{host} does not exist according to {resolver} (NXDOMAIN)",
          "Check the service name and region; a Route 53 private hosted zone for {zone} without this record "
          "shadows the public name — delete that zone or add the record"),
    Cause("dns_no_answer",
          "{resolver} gives no address for {host} ({rcode})",
          "Check Route 53 Resolver rules and private hosted zones associated with the VPC"),
    Cause("endpoint_ipv4_only",
          "This instance is in an IPv6-only subnet (no IPv4 address), but {host} has only IPv4 answers ({answers}; "
          "{aaaa}): the {service} endpoint serves IPv4 only (IpAddressType ipv4)",
          "Make the endpoint dual-stack with AAAA records in Private DNS (every endpoint subnet needs an IPv6 CIDR)",
          "aws ec2 modify-vpc-endpoint --vpc-endpoint-id {endpoint_id} --ip-address-type dualstack "
          "--dns-options DnsRecordIpType=dualstack"),
    Cause("dns_timeout",
          "{resolver} did not answer the query for {host} within {timeout_s} s",
          "Check that enableDnsSupport is true on the VPC and that UDP/TCP 53 to the resolver is allowed"),
    Cause("dns_mixed_answers",
          "{host} resolves to a mix of private and public addresses ({answers})",
          "Check for a Route 53 private hosted zone or /etc/hosts entry that shadows the endpoint's Private DNS"),
    # --- interface endpoints: identity ----------------------------------------------------------
    Cause("eni_mismatch",
          "{host} resolves to {answers}, but the endpoint {endpoint_id}'s ENIs have {eni_ips}: a stale or "
          "foreign DNS answer (a private hosted zone, /etc/hosts, or a deleted endpoint)",
          "Find what serves the old answer (Route 53 private hosted zones associated with the VPC, /etc/hosts, "
          "a custom DNS server) and remove it"),
    Cause("endpoint_not_available",
          "The endpoint {endpoint_id} for {service} is in state {state}, not available",
          "Wait for it to become available, or accept/recreate it",
          "aws ec2 describe-vpc-endpoints --vpc-endpoint-ids {endpoint_id}"),
    # --- interface endpoints: reachability -----------------------------------------------------
    Cause("tcp_timeout",
          "TCP 443 to {ip} timed out: the endpoint's security group lacks inbound TCP 443 from the "
          "instance, or the instance's security group lacks outbound TCP 443, or a network ACL drops it",
          "Allow inbound TCP 443 from the instance's security group (or the subnet CIDR) on the endpoint's "
          "security group, and outbound TCP 443 on the instance's security group; check the subnet's NACL"),
    Cause("endpoint_sg_no_inbound_443",
          "TCP 443 to {ip} timed out and the endpoint's security group {sg_ids} has no inbound TCP 443 rule "
          "that admits the instance",
          "Add an inbound rule TCP 443 from the instance's security group or the subnet CIDR",
          "aws ec2 authorize-security-group-ingress --group-id {sg_id} --protocol tcp --port 443 --cidr {subnet_cidr}"),
    Cause("endpoint_sg_no_inbound_443_ipv6",
          "TCP 443 to {ip} (IPv6) timed out and the endpoint's security group {sg_ids} has no inbound TCP 443 rule "
          "that admits the instance's IPv6 address {source} (IPv4 CIDR rules do not cover IPv6)",
          "Add an inbound rule TCP 443 from the instance's security group or the subnet's IPv6 CIDR",
          "aws ec2 authorize-security-group-ingress --group-id {sg_id} --ip-permissions "
          "IpProtocol=tcp,FromPort=443,ToPort=443,Ipv6Ranges=[{{CidrIpv6={subnet_ipv6_cidr}}}]"),
    Cause("instance_sg_no_outbound_443",
          "TCP 443 to {ip} timed out and the instance's security group {sg_ids} has no outbound TCP 443 rule",
          "Add an outbound rule TCP 443 (to the endpoints' security group, the VPC CIDR or 0.0.0.0/0)",
          "aws ec2 authorize-security-group-egress --group-id {sg_id} --ip-permissions "
          "IpProtocol=tcp,FromPort=443,ToPort=443,IpRanges=[{{CidrIp={vpc_cidr}}}]"),
    Cause("tcp_refused",
          "TCP 443 to {ip} was refused: nothing listens there, so the DNS answer is stale (the ENI no longer "
          "belongs to an endpoint)",
          "Find what serves the stale answer (private hosted zone, /etc/hosts, custom DNS) and remove it"),
    Cause("tcp_unreachable",
          "TCP 443 to {ip} failed at once ({error}): no route from the instance",
          "Check the instance's routes and the subnet's route table"),
    Cause("tls_failed",
          "TLS with {host} at {ip} failed ({error}): a proxy or firewall intercepts TLS, or the address "
          "belongs to a different service",
          "Remove TLS interception for AWS endpoints, or trust its CA via AWS_CA_BUNDLE / ca_bundle; check "
          "that {host} resolves to this service's endpoint"),
    # TLS after TCP, told apart by checks/tlsprobe.py (issuer read without trusting it; a small-MSS retry)
    Cause("tls_foreign_issuer",
          "The certificate presented for {host} at {ip} is issued by {issuer}, not by Amazon, and verifies "
          "against nothing trusted here ({error}): a TLS-inspecting firewall or proxy ({issuer_org}) answers "
          "in the endpoint's place",
          "Exempt *.amazonaws.com (the endpoint names) from TLS inspection on that appliance or proxy, or add "
          "its CA certificate to the trust store the SSM agent uses (Amazon Linux/RHEL: copy it to "
          "/etc/pki/ca-trust/source/anchors/ and run sudo update-ca-trust; Debian/Ubuntu: "
          "/usr/local/share/ca-certificates/ and sudo update-ca-certificates) and, for the AWS CLI and SDKs, "
          "to AWS_CA_BUNDLE / ca_bundle"),
    Cause("tls_ca_bundle_broken",
          "The certificate for {host} at {ip} is issued by Amazon ({issuer}) but does not verify against this "
          "instance's CA bundle ({bundle}: {error}): the bundle lacks Amazon's root CAs, or is empty or damaged",
          "Repair the CA bundle: sudo dnf reinstall -y ca-certificates && sudo update-ca-trust (Debian/Ubuntu: "
          "sudo apt-get install --reinstall ca-certificates && sudo update-ca-certificates); a custom ca_bundle "
          "/ AWS_CA_BUNDLE replaces the system store for the AWS CLI and SDKs, so it must hold Amazon Root CA "
          "1-4 too (https://www.amazontrust.com/repository/)"),
    Cause("tls_path_mtu",
          "TCP 443 to {ip} connects but the TLS handshake for {host} stalls ({error}); with a small MSS ({mss}) "
          "it completes: packets bigger than that are dropped on the way back and no ICMP \"fragmentation "
          "needed\" reaches the instance (a path-MTU black hole; {iface} has MTU {mtu})",
          "Let ICMP type 3 code 4 (Destination Unreachable: fragmentation needed and DF set) through, inbound and "
          "outbound, in the subnets' network ACLs and on every firewall or appliance in the path, so Path MTU "
          "Discovery works; or lower the instance's MTU to what the path carries: "
          "sudo ip link set dev {iface} mtu 1500"),
    Cause("tls_handshake_stalled",
          "TCP 443 to {ip} connects but no TLS answer for {host} comes back ({error}), not even with a small "
          "MSS ({mss}): something in the path accepts TCP and then holds the TLS exchange",
          "Find what answers TCP for {ip} without passing TLS (a firewall, transparent proxy or inspection "
          "appliance on the route to the endpoint; its logs show the held flow) and let TLS to the endpoint "
          "through"),
    Cause("az_unreachable",
          "{service}: {bad_count} of {total} endpoint ENIs do not accept connections ({bad_ips}); clients "
          "that pick those addresses stall",
          "Fix the security group / NACL for the ENIs in the affected AZ(s), or remove the endpoint's subnet there"),
    Cause("reach_via_internet",
          "{service} works, but over the internet: {host}'s public addresses ({ips}) accept TLS from here, so the "
          "traffic leaves through an Internet Gateway or NAT route (or a proxy), not through an interface endpoint",
          "Make the private path work (see dns.{service}'s fix), then remove the internet route; until then "
          "Session Manager and Run Command depend on the internet path"),
    Cause("reach_via_pinned_address",
          "{service} works only because {source} pins {host} to {ips} (an endpoint address that accepts TLS): "
          "DNS itself gives public addresses, so anything that does not read {source} — other instances, "
          "containers with their own hosts file — fails",
          "Fix Private DNS (see dns.{service}'s fix) and remove the {source} entry for {host}; a pin breaks "
          "silently when the endpoint's ENIs change"),
    Cause("nacl_blocks",
          "The network ACL {nacl_id} of subnet {subnet_id} drops the {leg} of TCP 443 with {ip}: {direction} "
          "TCP port {port} {arrow} {peer} — {rule_words}. NACLs are stateless: the replies to the instance's "
          "ephemeral ports need entries of their own",
          "Add an {direction} entry to {nacl_id} allowing TCP {ports} {arrow} {cidr}{scope}, numbered below any "
          "entry that matches first",
          "aws ec2 create-network-acl-entry --network-acl-id {nacl_id} --{flag} --rule-number <number below "
          "{rule}> --protocol tcp --port-range From={from_port},To={to_port} --cidr-block {cidr} --rule-action allow"),
    Cause("nacl_suspected",
          "{service}: the endpoint ENIs in this instance's own subnet ({subnet_cidr}) accept connections, the ones "
          "in other subnets ({bad_ips}) time out: a network ACL filters traffic between subnets (most often the "
          "return traffic to ephemeral ports 1024-65535); a security group would not single out other subnets",
          "Check the NACLs of this subnet and of the endpoint's subnets (VPC console: Network ACLs): inbound and "
          "outbound TCP 443 between the subnets, and TCP 1024-65535 for the replies; allow ec2:DescribeNetworkAcls "
          "to have the entry named",
          "aws ec2 describe-network-acls --filters Name=association.subnet-id,Values={subnet_id}"),
    Cause("stale_answer_refused",
          "{service}: {bad_ips} refuse TCP 443 while the other answers accept it: nothing listens there, so DNS "
          "hands out a stale record next to the endpoint's ENIs; clients that pick it fail",
          "Find what serves the stale answer (a Route 53 private hosted zone record, a custom DNS server, "
          "/etc/hosts) and remove it"),
    # --- S3 --------------------------------------------------------------------------------------
    Cause("s3_no_gateway_route",
          "S3 at {ip} did not answer: the subnet's route table has no route for the S3 prefix list to a "
          "gateway endpoint",
          "Associate the VPC's S3 gateway endpoint with the subnet's route table (aws ec2 modify-vpc-endpoint "
          "--vpc-endpoint-id <vpce-id> --add-route-table-ids <the subnet's route table>); if the VPC has none, "
          "create one with the route table",
          "aws ec2 create-vpc-endpoint --vpc-id {vpc_id} --vpc-endpoint-type Gateway --service-name "
          "com.amazonaws.{region}.s3 --route-table-ids {route_table_id}"),
    Cause("s3_route_missing",
          "The route table {route_table_id} of this subnet has no route to the S3 prefix list {prefix_list_id} "
          "through a gateway endpoint",
          "Associate the S3 gateway endpoint with this subnet's route table",
          "aws ec2 modify-vpc-endpoint --vpc-endpoint-id {endpoint_id} --add-route-table-ids {route_table_id}"),
    Cause("s3_route_other_tables",
          "The S3 gateway endpoint {endpoint_id} is associated with {other_tables}, not with {route_table_id}, the "
          "route table of this subnet: only subnets that use those tables reach S3 through it",
          "Associate the endpoint with this subnet's route table as well",
          "aws ec2 modify-vpc-endpoint --vpc-endpoint-id {endpoint_id} --add-route-table-ids {route_table_id}"),
    Cause("s3_outside_prefix_list",
          "{host} resolves to {answers}, which are not in the region's S3 prefix list {prefix_list_id}",
          "Check for DNS overrides of S3 names; the gateway endpoint only carries addresses in the prefix list"),
    Cause("s3_bucket_other_region",
          "The bucket {bucket} is in {bucket_region}, not {region}: gateway endpoints only reach buckets in "
          "the VPC's own region",
          "Use a bucket in {region}, or reach {bucket_region} another way (an interface endpoint there via peering, or a NAT)"),
    Cause("s3_access_denied_iam",
          "S3 denied {action} ({error}): the instance profile's role lacks the permission",
          "Grant the role {action} on {resource} (an IAM policy on the instance profile's role)"),
    Cause("s3_access_denied_endpoint_policy",
          "S3 denied {action} because the VPC endpoint's policy does not allow it ({error})",
          "Allow {action} on {resource} in the gateway endpoint's policy",
          "aws ec2 modify-vpc-endpoint --vpc-endpoint-id {endpoint_id} --policy-document file://policy.json"),
    Cause("s3_access_denied_bucket_policy",
          "S3 denied {action} because a bucket policy denies it ({error})",
          "Check the bucket policy of {bucket} (aws:sourceVpce / aws:SourceVpc conditions)"),
    Cause("s3_access_denied",
          "S3 denied {action} ({error}): the instance profile lacks the permission, or an endpoint or bucket "
          "policy denies it",
          "Grant the role {action} on {resource}, and check the gateway endpoint's policy and the bucket policy"),
    Cause("s3_no_such_bucket",
          "The bucket {bucket} does not exist",
          "Fix the bucket name in the config (s3.bucket)"),
    Cause("s3_no_such_key",
          "The object {key} does not exist in {bucket}",
          "Fix the key in the config (s3.key) or upload the object"),
    Cause("s3_no_credentials",
          "No AWS credentials for the S3 call: {error}",
          "Attach an instance profile (or configure credentials) with S3 permissions"),
    Cause("s3_error",
          "S3 answered {error}",
          "See the error code in the AWS S3 documentation"),
    Cause("s3_interface_endpoint",
          "{host} resolves to private addresses {answers}: an S3 interface endpoint with Private DNS serves S3 here",
          "Nothing to fix if intended; the gateway endpoint is not used for this name"),
    Cause("s3_sg_no_outbound_443",
          "S3 at {ip} did not answer and the instance's security group {sg_ids} has no outbound TCP 443 rule "
          "to the S3 prefix list {prefix_list_id} (or a CIDR that holds S3's addresses)",
          "Add an outbound rule TCP 443 to the S3 prefix list on the instance's security group",
          "aws ec2 authorize-security-group-egress --group-id {sg_id} --ip-permissions "
          "IpProtocol=tcp,FromPort=443,ToPort=443,PrefixListIds=[{{PrefixListId={prefix_list_id}}}]"),
    Cause("s3_path_blocked",
          "S3 at {ip} did not answer although the route table {route_table_id} sends the S3 prefix list to the "
          "gateway endpoint {endpoint_id}: a network ACL, a host firewall or a security group drops the traffic",
          "Check the subnet's network ACL (outbound TCP 443 and inbound TCP 1024-65535 for the S3 prefix list's "
          "CIDRs), the instance security group's outbound 443 and any host firewall or proxy"),
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
          "out on TCP 443 and back in on TCP 1024-65535"),
    # --- DynamoDB (checks/dynamodb.py) ------------------------------------------------------------
    Cause("dynamodb_outside_prefix_list",
          "{host} resolves to {answers}, which are not in the region's DynamoDB prefix list {prefix_list_id}",
          "Check for DNS overrides of DynamoDB names; the gateway endpoint only carries addresses in the prefix list"),
    Cause("dynamodb_no_gateway_route",
          "DynamoDB at {ip} is not routed: the VPC has no DynamoDB gateway endpoint for the subnet's route table "
          "{route_table_id}",
          "Create a DynamoDB gateway endpoint associated with the subnet's route table",
          "aws ec2 create-vpc-endpoint --vpc-id {vpc_id} --vpc-endpoint-type Gateway --service-name "
          "com.amazonaws.{region}.dynamodb --route-table-ids {route_table_id}"),
    Cause("dynamodb_route_missing",
          "The route table {route_table_id} of this subnet has no route to the DynamoDB prefix list {prefix_list_id} "
          "through the gateway endpoint {endpoint_id}{other_tables}",
          "Associate the DynamoDB gateway endpoint with this subnet's route table",
          "aws ec2 modify-vpc-endpoint --vpc-endpoint-id {endpoint_id} --add-route-table-ids {route_table_id}"),
    Cause("dynamodb_sg_no_outbound_443",
          "DynamoDB at {ip} did not answer and the instance's security group {sg_ids} has no outbound TCP 443 rule "
          "to the DynamoDB prefix list {prefix_list_id} (or a CIDR that holds DynamoDB's addresses)",
          "Add an outbound rule TCP 443 to the DynamoDB prefix list on the instance's security group (network ACLs "
          "cannot reference prefix lists: they need the list's CIDRs)",
          "aws ec2 authorize-security-group-egress --group-id {sg_id} --ip-permissions "
          "IpProtocol=tcp,FromPort=443,ToPort=443,PrefixListIds=[{{PrefixListId={prefix_list_id}}}]"),
    Cause("dynamodb_path_blocked",
          "DynamoDB at {ip} did not answer although the route table {route_table_id} sends the DynamoDB prefix list "
          "to the gateway endpoint {endpoint_id} and the instance security group allows it: a network ACL, a host "
          "firewall or a proxy drops the traffic",
          "Check the subnet's network ACL (outbound TCP 443 and inbound TCP 1024-65535 for each CIDR of the DynamoDB "
          "prefix list: NACLs cannot reference prefix lists) and any host firewall or proxy"),
    Cause("dynamodb_no_answer",
          "DynamoDB at {ip} did not answer TCP 443: something drops the packets, as a VPC does without a route or "
          "an allowing rule; which one is not proven here ({why}). In order of likelihood: {order}",
          "1) Associate the DynamoDB gateway endpoint with this subnet's route table (aws ec2 modify-vpc-endpoint "
          "--vpc-endpoint-id <vpce-id> --add-route-table-ids {route_table_id}); 2) allow outbound TCP 443 to the "
          "DynamoDB prefix list on the instance's security group (aws ec2 authorize-security-group-egress --group-id "
          "{sg_id} --ip-permissions IpProtocol=tcp,FromPort=443,ToPort=443,PrefixListIds=[{{PrefixListId="
          "{prefix_list_id}}}]; the id: aws ec2 describe-prefix-lists --filters Name=prefix-list-name,"
          "Values=com.amazonaws.{region}.dynamodb); 3) network ACLs cannot reference prefix lists: the subnet's NACL "
          "must allow DynamoDB's CIDRs out on TCP 443 and back in on TCP 1024-65535"),
    Cause("dynamodb_access_denied_endpoint_policy",
          "DynamoDB denied {action} because the gateway endpoint's policy does not allow it ({error})",
          "Allow {action} on {resource} in the DynamoDB gateway endpoint's policy",
          "aws ec2 modify-vpc-endpoint --vpc-endpoint-id {endpoint_id} --policy-document file://policy.json"),
    Cause("dynamodb_access_denied_iam",
          "DynamoDB denied {action} ({error}): the instance profile's role lacks the permission",
          "Grant the role {action} on {resource} (an IAM policy on the instance profile's role)"),
    Cause("dynamodb_access_denied",
          "DynamoDB denied {action} ({error}): the role lacks the permission, or the endpoint policy (or an SCP, a "
          "permissions boundary, a table's resource policy) denies it",
          "Grant the role {action} on {resource}, and check the DynamoDB gateway endpoint's policy"),
    Cause("dynamodb_table_not_found",
          "DynamoDB in {region} has no table {table} ({error}): the name is wrong, or the table is in another "
          "region — a gateway endpoint reaches only its own region's DynamoDB",
          "Fix dynamodb.table in the config, or use a table in {region} (another region needs a NAT, or an interface "
          "endpoint there reached through peering)"),
    Cause("dynamodb_table_other_region",
          "The table {table} is in {table_region}, not {region}: a gateway endpoint reaches only its own region's "
          "DynamoDB",
          "Use a table in {region}, or reach {table_region} another way (an interface endpoint there via peering, "
          "or a NAT)"),
    Cause("dynamodb_no_credentials",
          "No AWS credentials for the DynamoDB call: {error}",
          "Attach an instance profile (or configure credentials) with DynamoDB permissions"),
    Cause("dynamodb_error",
          "DynamoDB answered {error}",
          "See the error code in the Amazon DynamoDB API reference"),
    # --- isolation -------------------------------------------------------------------------------
    Cause("internet_path",
          "A TCP connection to {host}:{port} ({ip}) succeeded: this instance has a path to the internet "
          "(an Internet Gateway or NAT route, or a proxy)",
          "Remove the 0.0.0.0/0 route to the IGW/NAT from the subnet's route table (VPC console: Route tables > Routes)",
          "aws ec2 delete-route --route-table-id {route_table_id} --destination-cidr-block 0.0.0.0/0"),
    Cause("internet_path_refused",
          "TCP {port} to {host} ({ip}) was refused: an RST came back in {rst_ms} ms, so the SYN reached something "
          "that answered. A VPC without an internet path drops it (a timeout); an RST means an Internet Gateway "
          "or NAT route exists and the host refuses the port, or a firewall or proxy on the way rejects "
          "instead of dropping",
          "Look for a 0.0.0.0/0 route to an igw-/nat- in the subnet's route table and remove it. With none, find "
          "what answers: an RST well under a millisecond comes from this instance itself (a REJECT rule: nft list "
          "ruleset, iptables -S) or a local proxy; ip route get {ip} shows the way out",
          "aws ec2 describe-route-tables --filters Name=association.subnet-id,Values={subnet_id} "
          "--query 'RouteTables[].Routes'"),
    # --- EC2 API (for identity) --------------------------------------------------------------------
    Cause("ec2_api_unavailable",
          "The EC2 API is not reachable or not permitted from here ({error}); endpoint identity rests on CIDR evidence",
          "Optional: create an ec2 interface endpoint and allow ec2:DescribeVpcEndpoints, "
          "ec2:DescribeNetworkInterfaces, ec2:DescribeVpcAttribute, ec2:DescribeRouteTables, "
          "ec2:DescribePrefixLists, ec2:DescribeManagedPrefixLists, ec2:GetManagedPrefixListEntries, "
          "ec2:DescribeSecurityGroups and ec2:DescribeNetworkAcls to the instance role (packaging/iam/ec2-describe-for-endpoint-identity.json)"),
    # --- ourselves --------------------------------------------------------------------------------
    Cause("check_crashed",
          "The check failed inside vpce-doctor: {error}",
          "Report this as a bug with the evidence (traceback)"),
    Cause("check_timeout",
          "The check did not finish within its {timeout_s} s budget",
          "Raise --timeout, or look at what it was waiting on in the evidence"),
    Cause("missing_fact",
          "{fact} is unknown: IMDS did not provide it ({imds}) and the config does not set it",
          "Fix IMDS (see the imds finding), or set facts.{fact} in the config"),
    # --- does AWS accept this instance (checks/ssmapi.py) ------------------------------------
    Cause("credentials_no_role",
          "The instance profile {profile} contains no role: IMDS has no credentials to give the SSM agent",
          "Add a role that has the AmazonSSMManagedInstanceCore policy to the instance profile",
          "aws iam add-role-to-instance-profile --instance-profile-name {profile} --role-name <role-name>"),
    Cause("credentials_unreadable",
          "IMDS gave no usable role credentials ({error}): the SSM agent cannot sign its calls",
          "Check that nothing on the instance intercepts 169.254.169.254 and that the instance profile's role "
          "exists; detach and re-attach the instance profile if IMDS keeps failing"),
    Cause("role_not_assumable",
          "The role {role}'s trust policy does not let EC2 assume it (IMDS answers AssumeRoleUnauthorizedAccess): "
          "the SSM agent gets no credentials and never registers",
          "Make the role's trust policy allow the service principal ec2.amazonaws.com to call sts:AssumeRole",
          "aws iam update-assume-role-policy --role-name {role} --policy-document "
          "'{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Principal\":"
          "{{\"Service\":\"ec2.amazonaws.com\"}},\"Action\":\"sts:AssumeRole\"}}]}}'"),
    Cause("credentials_error",
          "IMDS answered the role {role}'s credentials with Code {code} ({error}): the SSM agent gets none",
          "Check the role and its trust policy in IAM; detach and re-attach the instance profile",
          "aws iam get-role --role-name {role}"),
    Cause("credentials_expired",
          "IMDS hands out credentials that already expired ({expiration}) by the local clock: the clock is far "
          "ahead, or IMDS cannot refresh the role session",
          "Check the local clock (see the clock finding; chronyc tracking); if it is right, stop and start the "
          "instance so that IMDS gets fresh credentials"),
    Cause("credentials_rejected",
          "AWS rejected the credentials the instance signs with ({code}: {error})",
          "Check the clock (the clock finding) and that no AWS_* variable, ~/.aws file or proxy substitutes "
          "other credentials for the role {role}'s; then restart the agent: sudo systemctl restart amazon-ssm-agent"),
    Cause("access_denied_identity_policy",
          "The instance role {role}'s identity-based policies do not let it call {action} ({error}): the SSM "
          "agent cannot register and hibernates",
          "Attach AmazonSSMManagedInstanceCore to the role (an explicit Deny in one of its policies wins over "
          "any Allow: remove that statement)",
          "aws iam attach-role-policy --role-name {role} --policy-arn "
          "arn:{partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"),
    Cause("access_denied_endpoint_policy",
          "The VPC endpoint policy of the {service} endpoint {endpoint_id} refuses {action} ({error})",
          "Reset the endpoint policy to the default (full access), or add a statement that allows {action} for "
          "the instance role (Principal *, Resource *)",
          "aws ec2 modify-vpc-endpoint --vpc-endpoint-id {endpoint_id} --reset-policy"),
    Cause("access_denied_scp",
          "An AWS Organizations policy (service or resource control policy) refuses {action} ({error}); nothing "
          "on this instance or its role can override it",
          "Ask the organization's administrator to exempt {action} (AmazonSSMManagedInstanceCore's actions) for "
          "this account or role"),
    Cause("access_denied_boundary",
          "The role {role}'s permissions boundary does not allow {action} ({error})",
          "Add the AmazonSSMManagedInstanceCore actions to the permissions boundary, or remove the boundary",
          "aws iam get-role --role-name {role} --query Role.PermissionsBoundary"),
    Cause("access_denied_other",
          "{policy} refuses {action} ({error})",
          "Allow {action} for the instance role {role} in that policy"),
    Cause("access_denied_ambiguous",
          "AWS refused {action} without naming the policy ({error}); candidates: the role {role}'s identity "
          "policies, the {service} VPC endpoint policy, an SCP, the role's permissions boundary",
          "Check, in this order: the role's policies (aws iam list-attached-role-policies --role-name {role}), "
          "the endpoint policy (aws ec2 describe-vpc-endpoints --query 'VpcEndpoints[].PolicyDocument'), the "
          "organization's SCPs, the role's permissions boundary"),
    Cause("clock_skew",
          "The local clock is {skew}: AWS refuses SigV4 signatures more than {limit} off, which breaks {breaks}",
          "Synchronise the clock with the Amazon Time Sync Service (169.254.169.123; chrony's default on Amazon "
          "Linux): sudo chronyc makestep, then check chronyc tracking (or timedatectl status)"),
    Cause("clock_drift",
          "The local clock is {skew}: still accepted, but AWS refuses SSM signatures beyond 5 minutes",
          "Check the time service: chronyc tracking (or timedatectl status); the Amazon Time Sync Service is at "
          "169.254.169.123"),
    Cause("ssm_not_registered",
          "SSM accepts this instance's signature and role, but {instance_id} is not registered as a managed node: "
          "the SSM agent has not registered (not running, hibernating, or started before the fix)",
          "See the ssm_agent findings; once they are OK: sudo systemctl restart amazon-ssm-agent"),
    Cause("preferences_unreadable",
          "The Session Manager preferences (document SSM-SessionManagerRunShell) could not be read ({error}); "
          "what a session needs (KMS, CloudWatch Logs, S3) was not checked",
          "Allow ssm:GetDocument on the document SSM-SessionManagerRunShell for the role (it is in "
          "AmazonSSMManagedInstanceCore) so that vpce-doctor can check what sessions need"),
    Cause("aws_throttled",
          "{service} throttled the request ({error})",
          "Usually transient; if it persists, something in this account calls {service} too often"),
    Cause("aws_error",
          "{service} answered with an error ({error})",
          "Look the error code up in the {service} API reference; the evidence has the request's details"),
    Cause("aws_bad_answer",
          "The answer to {action} is not what {service} sends: a proxy, a TLS-inspecting appliance or a fake "
          "endpoint answered",
          "Check the proxy settings (HTTPS_PROXY, no_proxy) and what the {service} name resolves to"),
    Cause("aws_call_blocked",
          "{action} could not be tried because {blocker} failed",
          "Fix the {blocker} finding first"),
    Cause("aws_call_failed",
          "{action} through the {service} endpoint failed: {error}",
          "See the dns/reach findings for {service}; if they are OK, check proxies and TLS inspection"),
    # --- resolver and interface endpoints (appended by the resolver/endpoints checks) -----------
    Cause("system_dns_unreachable",
          "The system resolver ({source}, from {path}) does not answer ({error}): programs on this instance "
          "that resolve through it, the SSM agent included, stall or fail",
          "Fix or remove that nameserver in {path}, or point it at the Amazon resolver {resolver} (with "
          "systemd-resolved: check systemctl status systemd-resolved and resolvectl status)"),
    Cause("dns_private_outside_vpc",
          "{host} resolves to private addresses {answers} outside this VPC's CIDRs {vpc_cidrs}: a shared "
          "(centralized) endpoint in another VPC via a private hosted zone, or a stale record",
          "Nothing to fix if a shared endpoint is intended (reach.{service} shows whether it works); otherwise "
          "remove the private hosted zone or record for {host} and create the endpoint in this VPC"),
    # --- Session Manager preferences -> requirements (checks/session.py) --------------------------
    Cause("session_kms_endpoint_missing",
          "The Session Manager preferences encrypt sessions with KMS, but there is no kms interface endpoint "
          "with Private DNS in this VPC: {host} resolves to {answers}, which the instance cannot reach, so the "
          "agent cannot call kms:Decrypt and every session fails",
          "Create the interface endpoint com.amazonaws.{region}.kms with Private DNS in the instance's subnets, "
          "with a security group that admits TCP 443 from the instance (or remove kmsKeyId from the preferences)",
          "aws ec2 create-vpc-endpoint --vpc-id {vpc_id} --vpc-endpoint-type Interface --service-name "
          "com.amazonaws.{region}.kms --subnet-ids {subnet_id} --security-group-ids {sg_id} --private-dns-enabled"),
    Cause("session_logs_endpoint_missing",
          "The Session Manager preferences log sessions to CloudWatch Logs, but there is no logs interface "
          "endpoint with Private DNS in this VPC: {host} resolves to {answers}, which the instance cannot reach; "
          "the agent waits minutes for logs:DescribeLogGroups before each session, logs nothing, and refuses "
          "the session when cloudWatchEncryptionEnabled is set",
          "Create the interface endpoint com.amazonaws.{region}.logs with Private DNS in the instance's subnets, "
          "with a security group that admits TCP 443 from the instance (or turn CloudWatch logging off)",
          "aws ec2 create-vpc-endpoint --vpc-id {vpc_id} --vpc-endpoint-type Interface --service-name "
          "com.amazonaws.{region}.logs --subnet-ids {subnet_id} --security-group-ids {sg_id} --private-dns-enabled"),
    Cause("session_path_blocked",
          "{what} needs {service}, and {blocker} failed first",
          "Fix {blocker} first"),
    Cause("session_kms_key_other_region",
          "The Session Manager preferences name the KMS key {key} in {key_region}, but the agent calls KMS in "
          "{region} (keys are regional; the kms endpoint serves its own region only): kms:Decrypt fails",
          "Use a KMS key in {region} in the Session Manager preferences (Systems Manager console: Session Manager "
          "> Preferences > KMS encryption)"),
    Cause("session_kms_key_not_found",
          "The KMS key {key} named in the Session Manager preferences does not exist in {region} (or is not "
          "visible to this account): kms:Decrypt fails and every session ends at once",
          "Fix kmsKeyId in the Session Manager preferences (Session Manager > Preferences > KMS encryption)"),
    Cause("session_kms_key_unusable",
          "The KMS key {key} named in the Session Manager preferences cannot decrypt session keys: {why}",
          "Enable the key (aws kms enable-key / cancel-key-deletion) or choose a symmetric encryption key in the "
          "Session Manager preferences"),
    Cause("session_log_group_missing",
          "The CloudWatch Logs group {log_group} named in the Session Manager preferences does not exist in "
          "{region}: {effect}",
          "Create the log group (with --kms-key-id <key ARN> when cloudWatchEncryptionEnabled is set; the key "
          "policy must allow logs.{region}.amazonaws.com), or fix cloudWatchLogGroupName in the preferences",
          "aws logs create-log-group --log-group-name {log_group} --region {region}"),
    Cause("session_log_group_not_encrypted",
          "The Session Manager preferences require an encrypted log group (cloudWatchEncryptionEnabled), but "
          "{log_group} has no KMS key: the agent refuses every session with \"We couldn't start the session "
          "because encryption is not set up on the selected CloudWatch Logs log group. Either encrypt the log "
          "group or choose an option to enable logging without encryption.\"",
          "Associate a KMS key with the log group (its key policy must allow the CloudWatch Logs service "
          "principal logs.<region>.amazonaws.com), or turn off cloudWatchEncryptionEnabled in the preferences",
          "aws logs associate-kms-key --log-group-name {log_group} --kms-key-id {key}"),
    Cause("session_s3_bucket_missing",
          "The S3 bucket {bucket} named in the Session Manager preferences does not exist: {effect}",
          "Create the bucket in this region or fix s3BucketName in the Session Manager preferences"),
    Cause("session_s3_bucket_other_region",
          "The S3 bucket {bucket} named in the Session Manager preferences is in {bucket_region}, not {region}: "
          "the S3 gateway endpoint only reaches buckets in its own region, so session logs cannot be uploaded",
          "Use a bucket in {region} for session logs (Session Manager > Preferences > S3 logging)"),
    Cause("session_s3_bucket_not_encrypted",
          "The Session Manager preferences require an encrypted bucket (s3EncryptionEnabled), but {bucket} has "
          "no default encryption: the agent refuses every session with \"We couldn't start the session because "
          "encryption is not set up on the selected Amazon S3 bucket. Either encrypt the bucket or choose an "
          "option to enable logging without encryption.\"",
          "Turn on default encryption (SSE-S3 or SSE-KMS) for the bucket, or turn off s3EncryptionEnabled",
          "aws s3api put-bucket-encryption --bucket {bucket} --server-side-encryption-configuration "
          "'{{\"Rules\":[{{\"ApplyServerSideEncryptionByDefault\":{{\"SSEAlgorithm\":\"AES256\"}}}}]}}'"),
    Cause("session_access_denied_identity",
          "{action} is {how} ({error}); the agent needs it for {purpose}",
          "Allow {actions} on {resource} in the role {role}",
          "aws iam put-role-policy --role-name {role} --policy-name {policy_name} --policy-document '{policy}'"),
    Cause("session_access_denied_endpoint_policy",
          "{action} is {how} ({error}); the agent needs it for {purpose}",
          "Allow {actions} on {resource} in the {service} endpoint's policy, or reset it to the default "
          "(full access)",
          "aws ec2 modify-vpc-endpoint --vpc-endpoint-id {endpoint_id} --reset-policy"),
    Cause("session_access_denied_other",
          "{action} is {how} ({error}); the agent needs it for {purpose}",
          "Allow {actions} on {resource} for the role {role}: check {words} (when AWS does not say which: the "
          "role's policies, the {service} VPC endpoint policy, the key or bucket policy, a permissions boundary "
          "and service control policies)"),
    Cause("session_proof_denied",
          "Could not prove {what}: {action} is {how} ({error}). The agent does not need {action}; only this "
          "proof does",
          "Nothing to fix for sessions; to let vpce-doctor prove it, allow {action} for the role "
          "(packaging/iam lists the optional permissions)"),
    Cause("session_proof_failed",
          "Could not prove {what}: {action} gave no usable answer ({error})",
          "Check for a proxy or TLS interception in front of the AWS endpoint; run again"),
]}


# Causes that point at another finding ("fix that first"): a verdict names that finding, not these.
SYMPTOMS = frozenset({"ssm_agent_endpoints_failing", "ssm_agent_connected_path_failing", "ssm_agent_not_accepted",
                      "ssm_agent_waits_for",
                      "aws_call_blocked"})

_UNFILLED = re.compile(r"\{([a-z_]+)\}")

# What the instance knows about itself (IMDS or the config): vpc_id, subnet_id, region, … fill a
# fix's CLI command when the check that explains did not pass them. Set per check by the runner;
# the worker pool carries it into a check's own threads.
KNOWN_IDS: "ContextVar[Mapping[str, object]]" = ContextVar("vpce_doctor_known_ids", default={})


class _Partial(dict):  # leaves unknown {params} visible instead of raising
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _fmt(template: str, params: Dict[str, object]) -> str:
    return template.format_map(_Partial({k: v for k, v in params.items() if v not in (None, "", ())}))


def explain(code: str, **params: object) -> Dict[str, Optional[str]]:
    """``{"cause_code", "cause", "fix"}`` for a Finding. The fix ends with its CLI command, filled
    from ``params`` and then from what the instance knows (KNOWN_IDS); what nobody knows is a
    named ``<placeholder>``."""
    c = CAUSES[code]
    known = {k: v for k, v in KNOWN_IDS.get().items() if v not in (None, "", ())}
    merged = {**known, **{k: v for k, v in params.items() if v not in (None, "", ())}}
    fix = _fmt(c.fix, merged)
    if c.cli:
        cli = _fmt(c.cli, merged)
        cli = _UNFILLED.sub(lambda m: "<" + m.group(1).replace("_", "-") + ">", cli)
        fix = f"{fix}. CLI: {cli}"
    cause = _fmt(c.cause, merged)
    return {"cause_code": code, "cause": cause, "fix": fix}


def known_ids(facts: object) -> Dict[str, object]:
    """KNOWN_IDS from the instance facts (checks.model.Facts): only ids that name this instance's
    own resources — never a security group (a fix's sg_id may be the endpoint's, not ours)."""
    get = lambda name: getattr(facts, name, None)  # noqa: E731 - a local shorthand
    arn = str(get("instance_profile_arn") or "")
    credentials = get("credentials") or {}
    role = credentials.get("role") if isinstance(credentials, Mapping) else None
    return {"vpc_id": get("vpc_id"), "subnet_id": get("subnet_id"), "region": get("region"),
            "instance_id": get("instance_id"), "subnet_cidr": get("subnet_cidr"), "vpc_cidr": get("vpc_cidr"),
            "partition": get("partition"), "role": role,
            "profile": arn.rsplit("/", 1)[-1] if ":instance-profile/" in arn else None}
