-- What broke, recovered or changed in a window, by the resource the cause points at: the findings
-- whose StatusSince (when the finding entered its current status) lies in [start, end), with
-- PreviousStatus telling which way it went. Like `vpce-doctor fleet --since DURATION`.
-- Two execution parameters, ISO 8601 UTC as the agent writes them (YYYY-MM-DDTHH:MM:SSZ, which
-- compare as text): the window start and its end, e.g.
--   --execution-parameters "'2026-12-03T00:00:00Z'" "'2026-12-04T00:00:00Z'"
-- change:  broke     a failing status after OK, or after nothing known (PreviousStatus "")
--          recovered OK after a failing status
--          worse / better  between two failing statuses (WARNING -> CRITICAL is worse)
-- Blocked findings are left out (their blocker says what broke); causes local to an instance are
-- grouped per instance (resource_type 'instance'). The sync keeps only each instance's latest
-- report: a finding that broke and recovered inside the window shows as recovered.
WITH changed AS (
  SELECT
    accountid,
    region,
    resourceid AS instance_id,
    checkid AS check_id,
    status,
    coalesce(previousstatus, '') AS previous_status,
    statussince AS status_since,
    coalesce(causecode, '') AS cause_code,
    coalesce(vpcid, '') AS vpc_id,
    CASE status WHEN 'CRITICAL' THEN 3 WHEN 'WARNING' THEN 2 WHEN 'UNKNOWN' THEN 1 ELSE 0 END AS severity,
    CASE coalesce(previousstatus, '') WHEN 'CRITICAL' THEN 3 WHEN 'WARNING' THEN 2 WHEN 'UNKNOWN' THEN 1 ELSE 0 END
      AS previous_severity,
    CASE
      WHEN coalesce(causeresourcetype, '') IN ('', 'instance') OR coalesce(causeresourceid, '') = '' THEN 'instance'
      ELSE causeresourcetype
    END AS resource_type,
    CASE
      WHEN coalesce(causeresourcetype, '') IN ('', 'instance') OR coalesce(causeresourceid, '') = '' THEN resourceid
      ELSE causeresourceid
    END AS resource_id
  FROM ssminventory.custom_vpcedoctor
  WHERE statussince >= ?
    AND statussince < ?
    AND coalesce(blockedby, '') = ''
    AND status IN ('OK', 'WARNING', 'CRITICAL', 'UNKNOWN')
    AND coalesce(previousstatus, '') <> status
),
labelled AS (
  SELECT
    *,
    CASE
      WHEN severity = 0 AND previous_severity > 0 THEN 'recovered'
      WHEN severity > 0 AND previous_severity = 0 THEN 'broke'
      WHEN severity > previous_severity THEN 'worse'
      WHEN severity > 0 AND severity < previous_severity THEN 'better'
    END AS change
  FROM changed
)
SELECT
  change,
  accountid,
  region,
  resource_type,
  resource_id,
  array_join(array_sort(array_agg(DISTINCT cause_code) FILTER (WHERE cause_code <> '')), ',') AS cause_codes,
  count(DISTINCT instance_id) AS instance_count,
  slice(array_sort(array_agg(DISTINCT instance_id)), 1, 5) AS instances_sample,
  array_sort(array_agg(DISTINCT check_id)) AS checks,
  array_sort(array_agg(DISTINCT vpc_id) FILTER (WHERE vpc_id <> '')) AS vpcs,
  min(status_since) AS first_since,
  max(status_since) AS last_since
FROM labelled
WHERE change IS NOT NULL
GROUP BY change, accountid, region, resource_type, resource_id
ORDER BY first_since, change, accountid, region, resource_type, resource_id
