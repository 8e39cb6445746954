-- The Custom:VpceDoctor inventory type as a Resource Data Sync (SyncFormat=JsonSerDe) writes it:
--   s3://BUCKET/PREFIX/Custom:VpceDoctor/accountid=…/region=…/resourcetype=ManagedInstanceInventory/<instance>.json
-- one object per managed instance, one JSON line per finding (packaging/athena/README.md).
--
-- Column names: every key of a line in lower case, as the OpenX SerDe reads keys by default
-- ('case.insensitive' = 'TRUE': it lower-cases them). The agent's attributes, lower-cased, differ
-- from each other, from the sync's own resourceId/captureTime/schemaVersion and from the partitions
-- accountid/region/resourcetype, so no key needs a 'mapping.<column>' property.
-- Replace DOC-EXAMPLE-BUCKET/bucket-prefix with the sync's S3 destination (no prefix: drop it).
CREATE EXTERNAL TABLE IF NOT EXISTS ssminventory.custom_vpcedoctor (
  `resourceid` string COMMENT 'the managed instance (i-… / mi-…), written by the sync',
  `capturetime` string COMMENT 'the item CaptureTime, written by the sync',
  `schemaversion` string COMMENT 'the item SchemaVersion, written by the sync',
  `checkid` string COMMENT 'finding id: dns.ssm, reach.ssm.10.0.1.101, s3.route …',
  `status` string COMMENT 'OK | WARNING | CRITICAL | UNKNOWN',
  `summary` string,
  `cause` string,
  `causecode` string COMMENT 'a key of checks/causes.py',
  `fix` string COMMENT 'with the AWS CLI command when the agent knew the resource ids',
  `evidence` string COMMENT 'compact JSON',
  `checkedat` string COMMENT 'YYYY-MM-DDTHH:MM:SSZ',
  `agentversion` string,
  `blockedby` string COMMENT 'the finding id this one was blocked by ("" = ran)',
  `statussince` string COMMENT 'YYYY-MM-DDTHH:MM:SSZ the finding entered its current status',
  `previousstatus` string COMMENT 'the status before that ("" = unknown)',
  `causeresourcetype` string COMMENT 'endpoint-eni, vpc, route-table, security-group … ("" = no cause)',
  `causeresourceid` string COMMENT 'the resource the cause points at: stable within (account, region)',
  `causeresourcename` string COMMENT 'vpce/eni/rtb ids when the agent knew them',
  `awsaccountid` string COMMENT 'the account of the instance, as its agent saw it',
  `awsregion` string COMMENT 'the region of the instance, as its agent saw it',
  `vpcid` string,
  `subnetid` string,
  `availabilityzone` string,
  `securitygroupids` string COMMENT 'comma-separated, sorted',
  `rolename` string
)
COMMENT 'vpce-doctor findings (Custom:VpceDoctor) from a Systems Manager Resource Data Sync'
PARTITIONED BY (`accountid` string, `region` string, `resourcetype` string)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
LOCATION 's3://DOC-EXAMPLE-BUCKET/bucket-prefix/Custom:VpceDoctor/'
