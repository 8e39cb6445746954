"""Causes: IMDS, the instance, and the SSM agent's own evidence (checks/imds, instance, ssmagent, agent*). Part of the one catalogue in ``checks.causes`` (CAUSES keeps
this order: instance, network, gateway, aws)."""
from __future__ import annotations

from typing import List

from .causetype import Cause

CAUSES: List[Cause] = [
    # --- IMDS and instance -------------------------------------------------------------------
    Cause("imds_disabled",
          "IMDS answered 403 Forbidden to the IMDSv2 token request: the instance metadata endpoint is disabled",
          "Enable the metadata endpoint (EC2 console: Instance > Actions > Instance settings > Modify instance "
          "metadata options > Metadata: Enabled); the SSM agent needs IMDS for its credentials",
          "aws ec2 modify-instance-metadata-options --instance-id {instance_id} --http-endpoint enabled --http-tokens required",
          resource="instance"),
    Cause("imds_hop_limit",
          "IMDS did not answer the IMDSv2 token request in time: the metadata endpoint is unreachable from here, "
          "or the response hop limit is too low (the default 1 does not reach a container)",
          "Run on the instance itself, or raise the PUT response hop limit to 2 for containers; check that "
          "nothing (iptables, a proxy) blocks 169.254.169.254",
          "aws ec2 modify-instance-metadata-options --instance-id {instance_id} --http-put-response-hop-limit 2",
          resource="instance"),
    Cause("imds_unreachable",
          "IMDS at 169.254.169.254 refused or failed the connection ({error})",
          "Check that the metadata endpoint is enabled and that no local firewall or proxy blocks 169.254.169.254:80",
          resource="instance"),
    Cause("imds_ipv6_only",
          "IMDS answers only over IPv6 at [fd00:ec2::254]; 169.254.169.254 failed ({error}): {agent_note}",
          "Give the SSM agent the IPv6 endpoint: a systemd drop-in for amazon-ssm-agent with "
          "Environment=AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6, then systemctl daemon-reload and restart it",
          resource="instance"),
    Cause("imds_ipv6_disabled",
          "IMDS is unreachable: this instance has no IPv4 route to 169.254.169.254 (an IPv6-only subnet) and "
          "[fd00:ec2::254] does not answer ({error}); the IPv6 endpoint is disabled by default, also in IPv6-only subnets",
          "Enable the IMDS IPv6 endpoint (EC2 console: Instance > Actions > Instance settings > Modify instance "
          "metadata options > IPv6 endpoint: Enabled; Nitro instances only); the SSM agent needs IMDS for its credentials",
          "aws ec2 modify-instance-metadata-options --instance-id {instance_id} --http-protocol-ipv6 enabled "
          "--http-endpoint enabled",
          resource="instance"),
    Cause("imds_bad_answer",
          "IMDS gave an answer that is not what the metadata service returns ({error})",
          "Check for a proxy or local service intercepting 169.254.169.254; set the facts in the config to run without IMDS",
          resource="instance"),
    Cause("public_ip_assigned",
          "The instance has a public IPv4 address ({public_ipv4}); a private instance should have none",
          "Disable auto-assign public IPv4 on the subnet and launch without a public IP (or disassociate the Elastic IP)",
          "aws ec2 modify-subnet-attribute --subnet-id {subnet_id} --no-map-public-ip-on-launch",
          resource="subnet"),
    Cause("no_instance_profile",
          "No instance profile is attached: the SSM agent has no credentials to register with Systems Manager",
          "Attach an instance profile whose role has the AmazonSSMManagedInstanceCore policy",
          "aws ec2 associate-iam-instance-profile --instance-id {instance_id} --iam-instance-profile Name=<profile-name>",
          resource="instance"),
    Cause("ssm_agent_not_running",
          "The SSM agent process (amazon-ssm-agent) is not running",
          "Start it: sudo systemctl enable --now amazon-ssm-agent",
          resource="instance"),
    Cause("ssm_agent_endpoints_failing",
          "The SSM agent runs but holds no connection to the endpoints, and this instance cannot reach them "
          "either ({failing} failed): the agent is waiting for the network, not stuck",
          "Fix the failing {failing} finding(s) first; the agent reconnects by itself (restart it if it has "
          "not within a few minutes)",
          resource="instance"),
    Cause("ssm_agent_connected_path_failing",
          "The SSM agent still holds connections made earlier, but its path fails now ({failing} failed): "
          "once they drop (an agent restart, a network blip, an idle timeout) it will not reconnect",
          "Fix the failing {failing} finding(s); the agent needs no action of its own",
          resource="instance"),
    Cause("ssm_agent_not_connected",
          "The SSM agent runs but holds no connection to the endpoint ENIs ({expected}); it probably started "
          "before the endpoints existed and keeps retrying the old path",
          "Restart the agent (sudo systemctl restart amazon-ssm-agent) or reboot the instance after creating the endpoints",
          resource="instance"),
    # --- the SSM agent from its own evidence (checks/ssmagent.py) -------------------------------
    Cause("ssm_agent_not_accepted",
          "The SSM agent runs but holds no connection, and this run's own {failing} check(s) fail: AWS does not "
          "accept this instance (its credentials, clock or policies), so the agent backs off; that is the cause, "
          "not the agent",
          "Fix the {failing} finding(s) first; the agent retries by itself (a hibernating one within up to an hour: "
          "restart it only after the fix to skip that wait)",
          resource="instance"),
    Cause("ssm_agent_not_root",
          "The SSM agent (pid {pid}) runs as {user} (uid {uid}), not root: it cannot write /var/lib/amazon/ssm, "
          "create ssm-user or run commands as root",
          "Remove the User=/Group= lines from the agent's unit drop-ins (systemctl cat amazon-ssm-agent), then: "
          "sudo systemctl daemon-reload && sudo systemctl restart amazon-ssm-agent",
          resource="instance"),
    Cause("ssm_agent_too_old",
          "SSM agent {version} is older than {minimum}, the first version with {feature}",
          "Update the agent: sudo yum install -y amazon-ssm-agent (or the AWS-UpdateSSMAgent document), then "
          "sudo systemctl restart amazon-ssm-agent",
          resource="instance"),
    Cause("ssm_agent_needs_ec2messages",
          "SSM agent {version} receives Run Command only through ec2messages (ssmmessages from 3.1.821.0 on), and "
          "{failing} fails here: Run Command cannot reach this agent",
          "Fix the {failing} finding (create the ec2messages interface endpoint with Private DNS), or update the "
          "agent: sudo yum install -y amazon-ssm-agent && sudo systemctl restart amazon-ssm-agent",
          resource="instance"),
    Cause("ssm_agent_proxy_imds",
          "The SSM agent's environment sets a proxy ({proxy}, from {source}) and no_proxy does not exempt "
          "169.254.169.254: it asks IMDS for its credentials through the proxy and gets none",
          "Add no_proxy for IMDS to the agent's drop-in: sudo systemctl edit amazon-ssm-agent → [Service] "
          "Environment=\"no_proxy=169.254.169.254\" (keep your other entries), then sudo systemctl daemon-reload "
          "&& sudo systemctl restart amazon-ssm-agent",
          resource="instance"),
    Cause("ssm_agent_proxy_endpoints",
          "The SSM agent sends {hosts} through the proxy {proxy} (from {source}), not to the endpoints this "
          "check tested: the agent's path depends on that proxy",
          "With interface endpoints no proxy is needed: add .amazonaws.com to no_proxy in the agent's drop-in "
          "(sudo systemctl edit amazon-ssm-agent), then sudo systemctl daemon-reload && sudo systemctl restart "
          "amazon-ssm-agent",
          resource="instance"),
    Cause("ssm_agent_waits_for",
          "The SSM agent's log shows {symptom}, and this run's own {failing} check(s) fail too: that is the "
          "cause, not the agent",
          "Fix the {failing} finding(s); the agent retries by itself (when hibernating, within its backoff of "
          "up to an hour)",
          resource="instance"),
    Cause("ssm_agent_hibernating",
          "The SSM agent is hibernating (its log: {line}) although this run finds the credentials, the "
          "endpoints and the service's answer in order: it is stuck in hibernation after the cause was fixed",
          "Restart it: sudo systemctl restart amazon-ssm-agent",
          resource="instance"),
    Cause("ssm_agent_log_access_denied",
          "The SSM agent's calls are refused: its log says {line} ({policy})",
          "Attach AmazonSSMManagedInstanceCore to the instance role (aws iam attach-role-policy --role-name "
          "<role> --policy-arn arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore); if the message names a VPC "
          "endpoint policy: aws ec2 modify-vpc-endpoint --vpc-endpoint-id <vpce-id> --reset-policy",
          resource="role"),
    Cause("ssm_agent_log_credentials",
          "The SSM agent has no valid credentials: its log says {line}",
          "Check the instance profile's role and trust policy (the iam.credentials finding); then sudo "
          "systemctl restart amazon-ssm-agent",
          resource="role"),
    Cause("ssm_agent_log_clock",
          "AWS refuses the SSM agent's signatures as too old or too new: its log says {line}",
          "Synchronise the clock: sudo chronyc makestep (chronyc tracking shows the offset), then sudo "
          "systemctl restart amazon-ssm-agent",
          resource="instance"),
    Cause("ssm_agent_log_no_space",
          "The SSM agent cannot write its files: its log says {line}",
          "Free space on the filesystem of /var/lib/amazon/ssm and /var/log/amazon/ssm (df -h /var/lib/amazon/ssm; "
          "df -i for inodes), then sudo systemctl restart amazon-ssm-agent",
          resource="instance"),
    Cause("ssm_agent_log_proxy",
          "The SSM agent cannot reach its proxy: its log says {line}",
          "Fix or remove the proxy in the agent's drop-in (systemctl cat amazon-ssm-agent); with interface "
          "endpoints add .amazonaws.com and 169.254.169.254 to no_proxy; then sudo systemctl daemon-reload && "
          "sudo systemctl restart amazon-ssm-agent",
          resource="instance"),
    Cause("ssm_agent_log_tls",
          "The SSM agent does not trust the certificate it is shown: its log says {line} (TLS inspection by an "
          "appliance or proxy, a CA bundle on the instance that lacks Amazon's roots, or a wrong endpoint; "
          "reach.<service> names which when its handshake fails the same way)",
          "Exempt *.amazonaws.com from TLS inspection (or add .amazonaws.com to the agent's no_proxy), or repair the "
          "instance's CA bundle (sudo dnf reinstall ca-certificates && sudo update-ca-trust); then "
          "sudo systemctl restart amazon-ssm-agent",
          resource="instance"),
    Cause("ssm_agent_log_network",
          "The SSM agent cannot connect to the service: its log says {line}",
          "Check what the agent resolves for the ssm names (getent hosts ssm.<region>.amazonaws.com) and its "
          "proxy settings; when the checks here pass: sudo systemctl restart amazon-ssm-agent",
          resource="instance"),
    Cause("ssm_agent_disk_full",
          "{path} has {free} free ({inodes} free inodes): the SSM agent cannot write documents, state or logs",
          "Free space: df -h {path}; df -i {path}; remove old files (e.g. sudo find /var/lib/amazon/ssm -path "
          "'*/document/orchestration/*' -mtime +14 -delete; sudo journalctl --vacuum-size=200M), then sudo "
          "systemctl restart amazon-ssm-agent",
          resource="instance"),
    Cause("ssm_agent_disk_low",
          "{path} has only {free} free ({percent}% of the filesystem)",
          "Free space before the agent runs out: df -h {path}; du -sh /var/lib/amazon/ssm /var/log/amazon/ssm",
          resource="instance"),
    Cause("ssm_agent_config_region",
          "{file} sets {key} = {value}, but the instance is in {region}: the agent talks to another region's "
          "service, which does not know this instance",
          "Empty {key} in {file} (the agent then asks IMDS), then sudo systemctl restart amazon-ssm-agent",
          resource="instance"),
    Cause("ssm_agent_config_endpoint",
          "{file} overrides {overrides}: the agent uses those names, not the endpoints this run checked (a "
          "deleted endpoint's vpce-… name or another region's keeps the agent away)",
          "Empty the override(s) in {file} unless you need them (Private DNS makes the default names private), "
          "then sudo systemctl restart amazon-ssm-agent",
          resource="instance"),
    Cause("ssm_agent_config_invalid",
          "The agent's config {file} cannot be used: {error}",
          "Fix the file (python3 -m json.tool {file}) or remove it to use the defaults, then sudo systemctl "
          "restart amazon-ssm-agent",
          resource="instance"),
]
