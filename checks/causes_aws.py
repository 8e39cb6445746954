"""Causes: The EC2 API, our own trouble, whether AWS accepts this instance, and Session Manager's preferences. Part of the one catalogue in ``checks.causes`` (CAUSES keeps
this order: instance, network, gateway, aws)."""
from __future__ import annotations

from typing import List

from .causetype import Cause

CAUSES: List[Cause] = [
    # --- EC2 API (for identity) --------------------------------------------------------------------
    Cause("ec2_api_unavailable",
          "The EC2 API is not reachable or not permitted from here ({error}); endpoint identity rests on CIDR evidence",
          "Optional: create an ec2 interface endpoint and allow ec2:DescribeVpcEndpoints, "
          "ec2:DescribeNetworkInterfaces, ec2:DescribeVpcAttribute, ec2:DescribeRouteTables, "
          "ec2:DescribePrefixLists, ec2:DescribeManagedPrefixLists, ec2:GetManagedPrefixListEntries, "
          "ec2:DescribeSecurityGroups and ec2:DescribeNetworkAcls to the instance role (packaging/iam/ec2-describe-for-endpoint-identity.json)",
          resource="endpoint"),
    # --- ourselves --------------------------------------------------------------------------------
    Cause("check_crashed",
          "The check failed inside vpce-doctor: {error}",
          "Report this as a bug with the evidence (traceback)",
          resource="instance"),
    Cause("check_timeout",
          "The check did not finish within its {timeout_s} s budget",
          "Raise --timeout, or look at what it was waiting on in the evidence",
          resource="instance"),
    Cause("missing_fact",
          "{fact} is unknown: IMDS did not provide it ({imds}) and the config does not set it",
          "Fix IMDS (see the imds finding), or set facts.{fact} in the config",
          resource="instance"),
    # --- does AWS accept this instance (checks/ssmapi.py) ------------------------------------
    Cause("credentials_no_role",
          "The instance profile {profile} contains no role: IMDS has no credentials to give the SSM agent",
          "Add a role that has the AmazonSSMManagedInstanceCore policy to the instance profile",
          "aws iam add-role-to-instance-profile --instance-profile-name {profile} --role-name <role-name>",
          resource="instance"),
    Cause("credentials_unreadable",
          "IMDS gave no usable role credentials ({error}): the SSM agent cannot sign its calls",
          "Check that nothing on the instance intercepts 169.254.169.254 and that the instance profile's role "
          "exists; detach and re-attach the instance profile if IMDS keeps failing",
          resource="instance"),
    Cause("role_not_assumable",
          "The role {role}'s trust policy does not let EC2 assume it (IMDS answers AssumeRoleUnauthorizedAccess): "
          "the SSM agent gets no credentials and never registers",
          "Make the role's trust policy allow the service principal ec2.amazonaws.com to call sts:AssumeRole",
          "aws iam update-assume-role-policy --role-name {role} --policy-document "
          "'{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Principal\":"
          "{{\"Service\":\"ec2.amazonaws.com\"}},\"Action\":\"sts:AssumeRole\"}}]}}'",
          resource="role"),
    Cause("credentials_error",
          "IMDS answered the role {role}'s credentials with Code {code} ({error}): the SSM agent gets none",
          "Check the role and its trust policy in IAM; detach and re-attach the instance profile",
          "aws iam get-role --role-name {role}",
          resource="role"),
    Cause("credentials_expired",
          "IMDS hands out credentials that already expired ({expiration}) by the local clock: the clock is far "
          "ahead, or IMDS cannot refresh the role session",
          "Check the local clock (see the clock finding; chronyc tracking); if it is right, stop and start the "
          "instance so that IMDS gets fresh credentials",
          resource="instance"),
    Cause("credentials_rejected",
          "AWS rejected the credentials the instance signs with ({code}: {error})",
          "Check the clock (the clock finding) and that no AWS_* variable, ~/.aws file or proxy substitutes "
          "other credentials for the role {role}'s; then restart the agent: sudo systemctl restart amazon-ssm-agent",
          resource="instance"),
    Cause("access_denied_identity_policy",
          "The instance role {role}'s identity-based policies do not let it call {action} ({error}): the SSM "
          "agent cannot register and hibernates",
          "Attach AmazonSSMManagedInstanceCore to the role (an explicit Deny in one of its policies wins over "
          "any Allow: remove that statement)",
          "aws iam attach-role-policy --role-name {role} --policy-arn "
          "arn:{partition}:iam::aws:policy/AmazonSSMManagedInstanceCore",
          resource="role"),
    Cause("access_denied_endpoint_policy",
          "The VPC endpoint policy of the {service} endpoint {endpoint_id} refuses {action} ({error})",
          "Reset the endpoint policy to the default (full access), or add a statement that allows {action} for "
          "the instance role (Principal *, Resource *)",
          "aws ec2 modify-vpc-endpoint --vpc-endpoint-id {endpoint_id} --reset-policy",
          resource="endpoint"),
    Cause("access_denied_scp",
          "An AWS Organizations policy (service or resource control policy) refuses {action} ({error}); nothing "
          "on this instance or its role can override it",
          "Ask the organization's administrator to exempt {action} (AmazonSSMManagedInstanceCore's actions) for "
          "this account or role",
          resource="role"),
    Cause("access_denied_boundary",
          "The role {role}'s permissions boundary does not allow {action} ({error})",
          "Add the AmazonSSMManagedInstanceCore actions to the permissions boundary, or remove the boundary",
          "aws iam get-role --role-name {role} --query Role.PermissionsBoundary",
          resource="role"),
    Cause("access_denied_other",
          "{policy} refuses {action} ({error})",
          "Allow {action} for the instance role {role} in that policy",
          resource="role"),
    Cause("access_denied_ambiguous",
          "AWS refused {action} without naming the policy ({error}); candidates: the role {role}'s identity "
          "policies, the {service} VPC endpoint policy, an SCP, the role's permissions boundary",
          "Check, in this order: the role's policies (aws iam list-attached-role-policies --role-name {role}), "
          "the endpoint policy (aws ec2 describe-vpc-endpoints --query 'VpcEndpoints[].PolicyDocument'), the "
          "organization's SCPs, the role's permissions boundary",
          resource="role"),
    Cause("clock_skew",
          "The local clock is {skew}: AWS refuses SigV4 signatures more than {limit} off, which breaks {breaks}",
          "Synchronise the clock with the Amazon Time Sync Service (169.254.169.123; chrony's default on Amazon "
          "Linux): sudo chronyc makestep, then check chronyc tracking (or timedatectl status)",
          resource="instance"),
    Cause("clock_drift",
          "The local clock is {skew}: still accepted, but AWS refuses SSM signatures beyond 5 minutes",
          "Check the time service: chronyc tracking (or timedatectl status); the Amazon Time Sync Service is at "
          "169.254.169.123",
          resource="instance"),
    Cause("ssm_not_registered",
          "SSM accepts this instance's signature and role, but {instance_id} is not registered as a managed node: "
          "the SSM agent has not registered (not running, hibernating, or started before the fix)",
          "See the ssm_agent findings; once they are OK: sudo systemctl restart amazon-ssm-agent",
          resource="instance"),
    Cause("preferences_unreadable",
          "The Session Manager preferences (document SSM-SessionManagerRunShell) could not be read ({error}); "
          "what a session needs (KMS, CloudWatch Logs, S3) was not checked",
          "Allow ssm:GetDocument on the document SSM-SessionManagerRunShell for the role (it is in "
          "AmazonSSMManagedInstanceCore) so that vpce-doctor can check what sessions need",
          resource="role"),
    Cause("aws_throttled",
          "{service} throttled the request ({error})",
          "Usually transient; if it persists, something in this account calls {service} too often",
          resource="instance"),
    Cause("aws_error",
          "{service} answered with an error ({error})",
          "Look the error code up in the {service} API reference; the evidence has the request's details",
          resource="instance"),
    Cause("aws_bad_answer",
          "The answer to {action} is not what {service} sends: a proxy, a TLS-inspecting appliance or a fake "
          "endpoint answered",
          "Check the proxy settings (HTTPS_PROXY, no_proxy) and what the {service} name resolves to",
          resource="instance"),
    Cause("aws_call_blocked",
          "{action} could not be tried because {blocker} failed",
          "Fix the {blocker} finding first",
          resource="instance"),
    Cause("aws_call_failed",
          "{action} through the {service} endpoint failed: {error}",
          "See the dns/reach findings for {service}; if they are OK, check proxies and TLS inspection",
          resource="endpoint"),
    # --- resolver and interface endpoints (appended by the resolver/endpoints checks) -----------
    Cause("system_dns_unreachable",
          "The system resolver ({source}, from {path}) does not answer ({error}): programs on this instance "
          "that resolve through it, the SSM agent included, stall or fail",
          "Fix or remove that nameserver in {path}, or point it at the Amazon resolver {resolver} (with "
          "systemd-resolved: check systemctl status systemd-resolved and resolvectl status)",
          resource="instance"),
    Cause("dns_private_outside_vpc",
          "{host} resolves to private addresses {answers} outside this VPC's CIDRs {vpc_cidrs}: a shared "
          "(centralized) endpoint in another VPC via a private hosted zone, or a stale record",
          "Nothing to fix if a shared endpoint is intended (reach.{service} shows whether it works); otherwise "
          "remove the private hosted zone or record for {host} and create the endpoint in this VPC",
          resource="endpoint"),
    # --- Session Manager preferences -> requirements (checks/session.py) --------------------------
    Cause("session_kms_endpoint_missing",
          "The Session Manager preferences encrypt sessions with KMS, but there is no kms interface endpoint "
          "with Private DNS in this VPC: {host} resolves to {answers}, which the instance cannot reach, so the "
          "agent cannot call kms:Decrypt and every session fails",
          "Create the interface endpoint com.amazonaws.{region}.kms with Private DNS in the instance's subnets, "
          "with a security group that admits TCP 443 from the instance (or remove kmsKeyId from the preferences)",
          "aws ec2 create-vpc-endpoint --vpc-id {vpc_id} --vpc-endpoint-type Interface --service-name "
          "com.amazonaws.{region}.kms --subnet-ids {subnet_id} --security-group-ids {sg_id} --private-dns-enabled",
          resource="endpoint"),
    Cause("session_logs_endpoint_missing",
          "The Session Manager preferences log sessions to CloudWatch Logs, but there is no logs interface "
          "endpoint with Private DNS in this VPC: {host} resolves to {answers}, which the instance cannot reach; "
          "the agent waits minutes for logs:DescribeLogGroups before each session, logs nothing, and refuses "
          "the session when cloudWatchEncryptionEnabled is set",
          "Create the interface endpoint com.amazonaws.{region}.logs with Private DNS in the instance's subnets, "
          "with a security group that admits TCP 443 from the instance (or turn CloudWatch logging off)",
          "aws ec2 create-vpc-endpoint --vpc-id {vpc_id} --vpc-endpoint-type Interface --service-name "
          "com.amazonaws.{region}.logs --subnet-ids {subnet_id} --security-group-ids {sg_id} --private-dns-enabled",
          resource="endpoint"),
    Cause("session_path_blocked",
          "{what} needs {service}, and {blocker} failed first",
          "Fix {blocker} first",
          resource="instance"),
    Cause("session_kms_key_other_region",
          "The Session Manager preferences name the KMS key {key} in {key_region}, but the agent calls KMS in "
          "{region} (keys are regional; the kms endpoint serves its own region only): kms:Decrypt fails",
          "Use a KMS key in {region} in the Session Manager preferences (Systems Manager console: Session Manager "
          "> Preferences > KMS encryption)",
          resource="session-preferences"),
    Cause("session_kms_key_not_found",
          "The KMS key {key} named in the Session Manager preferences does not exist in {region} (or is not "
          "visible to this account): kms:Decrypt fails and every session ends at once",
          "Fix kmsKeyId in the Session Manager preferences (Session Manager > Preferences > KMS encryption)",
          resource="session-preferences"),
    Cause("session_kms_key_unusable",
          "The KMS key {key} named in the Session Manager preferences cannot decrypt session keys: {why}",
          "Enable the key (aws kms enable-key / cancel-key-deletion) or choose a symmetric encryption key in the "
          "Session Manager preferences",
          resource="session-preferences"),
    Cause("session_log_group_missing",
          "The CloudWatch Logs group {log_group} named in the Session Manager preferences does not exist in "
          "{region}: {effect}",
          "Create the log group (with --kms-key-id <key ARN> when cloudWatchEncryptionEnabled is set; the key "
          "policy must allow logs.{region}.amazonaws.com), or fix cloudWatchLogGroupName in the preferences",
          "aws logs create-log-group --log-group-name {log_group} --region {region}",
          resource="session-preferences"),
    Cause("session_log_group_not_encrypted",
          "The Session Manager preferences require an encrypted log group (cloudWatchEncryptionEnabled), but "
          "{log_group} has no KMS key: the agent refuses every session with \"We couldn't start the session "
          "because encryption is not set up on the selected CloudWatch Logs log group. Either encrypt the log "
          "group or choose an option to enable logging without encryption.\"",
          "Associate a KMS key with the log group (its key policy must allow the CloudWatch Logs service "
          "principal logs.<region>.amazonaws.com), or turn off cloudWatchEncryptionEnabled in the preferences",
          "aws logs associate-kms-key --log-group-name {log_group} --kms-key-id {key}",
          resource="session-preferences"),
    Cause("session_s3_bucket_missing",
          "The S3 bucket {bucket} named in the Session Manager preferences does not exist: {effect}",
          "Create the bucket in this region or fix s3BucketName in the Session Manager preferences",
          resource="session-preferences"),
    Cause("session_s3_bucket_other_region",
          "The S3 bucket {bucket} named in the Session Manager preferences is in {bucket_region}, not {region}: "
          "the S3 gateway endpoint only reaches buckets in its own region, so session logs cannot be uploaded",
          "Use a bucket in {region} for session logs (Session Manager > Preferences > S3 logging)",
          resource="bucket"),
    Cause("session_s3_bucket_not_encrypted",
          "The Session Manager preferences require an encrypted bucket (s3EncryptionEnabled), but {bucket} has "
          "no default encryption: the agent refuses every session with \"We couldn't start the session because "
          "encryption is not set up on the selected Amazon S3 bucket. Either encrypt the bucket or choose an "
          "option to enable logging without encryption.\"",
          "Turn on default encryption (SSE-S3 or SSE-KMS) for the bucket, or turn off s3EncryptionEnabled",
          "aws s3api put-bucket-encryption --bucket {bucket} --server-side-encryption-configuration "
          "'{{\"Rules\":[{{\"ApplyServerSideEncryptionByDefault\":{{\"SSEAlgorithm\":\"AES256\"}}}}]}}'",
          resource="bucket"),
    Cause("session_access_denied_identity",
          "{action} is {how} ({error}); the agent needs it for {purpose}",
          "Allow {actions} on {resource} in the role {role}",
          "aws iam put-role-policy --role-name {role} --policy-name {policy_name} --policy-document '{policy}'",
          resource="role"),
    Cause("session_access_denied_endpoint_policy",
          "{action} is {how} ({error}); the agent needs it for {purpose}",
          "Allow {actions} on {resource} in the {service} endpoint's policy, or reset it to the default "
          "(full access)",
          "aws ec2 modify-vpc-endpoint --vpc-endpoint-id {endpoint_id} --reset-policy",
          resource="gateway-endpoint|endpoint"),
    Cause("session_access_denied_other",
          "{action} is {how} ({error}); the agent needs it for {purpose}",
          "Allow {actions} on {resource} for the role {role}: check {words} (when AWS does not say which: the "
          "role's policies, the {service} VPC endpoint policy, the key or bucket policy, a permissions boundary "
          "and service control policies)",
          resource="role"),
    Cause("session_proof_denied",
          "Could not prove {what}: {action} is {how} ({error}). The agent does not need {action}; only this "
          "proof does",
          "Nothing to fix for sessions; to let vpce-doctor prove it, allow {action} for the role "
          "(packaging/iam lists the optional permissions)",
          resource="role"),
    Cause("session_proof_failed",
          "Could not prove {what}: {action} gave no usable answer ({error})",
          "Check for a proxy or TLS interception in front of the AWS endpoint; run again",
          resource="instance"),
]
