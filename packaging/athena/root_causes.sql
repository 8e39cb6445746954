-- Root causes first: the failing findings of every account and region grouped by the AWS resource
-- their cause points at (an endpoint's ENI, a VPC, a route table, a security group, a role …), with
-- how many instances each affects, a sample of them, their VPCs and subnets, one fix and when it
-- started. Then (kind = 'instance') the instances whose failures share no resource: causes local to
-- the instance (clock, agent, disk, IMDS) or entries of an agent too old to name a resource.
-- The same grouping as `vpce-doctor fleet --by resource` (agent/fleet_correlate.py):
--  * only WARNING, CRITICAL and UNKNOWN findings, and not those blocked by another finding (they
--    are consequences; their blocker is listed);
--  * not the causes that only point at another finding (checks.causes.SYMPTOMS, listed below),
--    unless an instance has nothing else to show;
--  * a root cause is (accountid, region, causeresourcetype, causeresourceid): resource ids are
--    stable within one account and region, not across them.
-- One result set; run it with `aws athena start-query-execution` (packaging/athena/README.md).
WITH failing AS (
  SELECT
    accountid,
    region,
    resourceid AS instance_id,
    status,
    CASE status WHEN 'CRITICAL' THEN 3 WHEN 'WARNING' THEN 2 WHEN 'UNKNOWN' THEN 1 ELSE 0 END AS severity,
    coalesce(causecode, '') AS cause_code,
    coalesce(fix, '') AS fix,
    coalesce(statussince, '') AS status_since,
    coalesce(vpcid, '') AS vpc_id,
    coalesce(subnetid, '') AS subnet_id,
    coalesce(causeresourcetype, '') AS resource_type,
    coalesce(causeresourceid, '') AS resource_id,
    coalesce(causeresourcename, '') AS resource_name
  FROM ssminventory.custom_vpcedoctor
  WHERE status IN ('WARNING', 'CRITICAL', 'UNKNOWN')
    AND coalesce(blockedby, '') = ''
),
classified AS (
  SELECT
    *,
    (resource_type NOT IN ('', 'instance') AND resource_id <> '') AS shared,
    (cause_code IN ('ssm_agent_endpoints_failing', 'ssm_agent_connected_path_failing', 'ssm_agent_not_accepted',
                    'ssm_agent_waits_for', 'aws_call_blocked')) AS symptom
  FROM failing
),
per_instance AS (
  SELECT
    *,
    bool_or(shared AND NOT symptom) OVER (PARTITION BY accountid, region, instance_id) AS has_shared,
    bool_or(NOT shared AND NOT symptom) OVER (PARTITION BY accountid, region, instance_id) AS has_own
  FROM classified
),
resources AS (
  SELECT
    'resource' AS kind,
    accountid,
    region,
    resource_type,
    resource_id,
    max(resource_name) AS resource_name,
    max(severity) AS severity,
    array_join(array_sort(array_agg(DISTINCT cause_code)), ',') AS cause_codes,
    count(DISTINCT instance_id) AS instance_count,
    slice(array_sort(array_agg(DISTINCT instance_id)), 1, 5) AS instances_sample,
    array_sort(array_agg(DISTINCT vpc_id) FILTER (WHERE vpc_id <> '')) AS vpcs,
    array_sort(array_agg(DISTINCT subnet_id) FILTER (WHERE subnet_id <> '')) AS subnets,
    -- one fix: preferably one whose CLI command names every id (no <placeholder> left)
    min_by(fix, CASE WHEN strpos(fix, '<') > 0 THEN 1 ELSE 0 END) AS fix,
    min(status_since) FILTER (WHERE status_since <> '') AS first_since
  FROM per_instance
  WHERE shared AND NOT symptom
  GROUP BY accountid, region, resource_type, resource_id
),
instances AS (
  SELECT
    'instance' AS kind,
    accountid,
    region,
    'instance' AS resource_type,
    instance_id AS resource_id,
    '' AS resource_name,
    max(severity) AS severity,
    array_join(array_sort(array_agg(DISTINCT cause_code)), ',') AS cause_codes,
    1 AS instance_count,
    ARRAY[instance_id] AS instances_sample,
    array_sort(array_agg(DISTINCT vpc_id) FILTER (WHERE vpc_id <> '')) AS vpcs,
    array_sort(array_agg(DISTINCT subnet_id) FILTER (WHERE subnet_id <> '')) AS subnets,
    min_by(fix, CASE WHEN strpos(fix, '<') > 0 THEN 1 ELSE 0 END) AS fix,
    min(status_since) FILTER (WHERE status_since <> '') AS first_since
  FROM per_instance
  -- its own causes; a symptom only when nothing else in its report explains it
  WHERE (NOT shared AND NOT symptom) OR (symptom AND NOT has_shared AND NOT has_own)
  GROUP BY accountid, region, instance_id
)
SELECT
  kind,
  accountid,
  region,
  resource_type,
  resource_id,
  resource_name,
  CASE severity WHEN 3 THEN 'CRITICAL' WHEN 2 THEN 'WARNING' ELSE 'UNKNOWN' END AS status,
  cause_codes,
  instance_count,
  instances_sample,
  vpcs,
  subnets,
  fix,
  first_since
FROM (
  SELECT * FROM resources
  UNION ALL
  SELECT * FROM instances
) AS result
ORDER BY
  CASE kind WHEN 'resource' THEN 0 ELSE 1 END,
  instance_count DESC,
  severity DESC,
  accountid,
  region,
  resource_type,
  resource_id
