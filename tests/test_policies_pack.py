"""Every rule, passing and failing, through the real pack subprocess over the analyzer protocol."""
from __future__ import annotations

import json

import pytest

from tests.fixtures.policy_pack import ACCOUNT, INSTANCE_ID, violations_of

PLAN = "aws:backup/plan:Plan"
VAULT = "aws:backup/vault:Vault"
VAULT_LOCK = "aws:backup/vaultLockConfiguration:VaultLockConfiguration"
VAULT_POLICY = "aws:backup/vaultPolicy:VaultPolicy"
SELECTION = "aws:backup/selection:Selection"
RBIN = "aws:rbin/rule:Rule"
SNAPSHOT = "aws:ebs/snapshot:Snapshot"
BUCKET = "aws:s3/bucket:Bucket"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
KEY = "aws:kms/key:Key"
DOCUMENT = "aws:ssm/document:Document"
PARAMETER = "aws:ssm/parameter:Parameter"
OBJECT_LOCK = "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration"
IAM_POLICY = "aws:iam/policy:Policy"
GROUP_ATTACHMENT = "aws:iam/groupPolicyAttachment:GroupPolicyAttachment"
AIR_GAPPED = "aws:backup/logicallyAirGappedVault:LogicallyAirGappedVault"
LAG_ARN = "arn:aws:backup:ap-south-1:123456789012:backup-vault:test-air-gapped"


def plan_rule(**changes):
    rule = {"ruleName": "daily", "targetVaultName": "test-vault", "schedule": "cron(0 20 * * ? *)",
            "lifecycle": {"deleteAfter": 7}}
    rule.update(changes)
    return {"rules": [rule]}


def run_command(*lines):
    return json.dumps({"schemaVersion": "2.2", "mainSteps": [
        {"action": "aws:runShellScript", "name": "dump", "inputs": {"runCommand": list(lines)}}]})


# --- the compliant strategy and the pack itself ----------------------------------------------------

def test_compliant_strategy_has_no_violations(judge, strategy_resources):
    result = judge(strategy_resources)
    assert result.violations == []
    assert result.analyzed == len(strategy_resources)


def test_pack_reports_every_rule_with_mandatory_enforcement(policy_gate):
    levels = {p.name: p.enforcement_level for p in policy_gate.policies}
    assert levels == {name: "mandatory" for name in (
        "backup-retention-minimum", "backup-schedule-at-least-daily", "backup-vault-locked",
        "backup-vault-deny-delete", "root-volume-in-backup-plan", "recycle-bin-retention-minimum",
        "critical-resources-protected", "baseline-snapshot-naming", "baseline-snapshot-locked",
        "dump-bucket-hardened", "dump-retention-minimum", "no-force-destroy", "kms-key-rotation",
        "no-inline-secrets", "dump-bucket-object-lock", "operator-guard-rails-attached",
        "binlog-retention-covers-dumps")}


def test_enforcement_level_from_config_downgrades_a_violation_to_advisory(judge, strategy_resources):
    result = judge(strategy_resources.changed(PLAN, **plan_rule(lifecycle={"deleteAfter": 3})),
                   {"backup-retention-minimum": {"enforcementLevel": "advisory"}})
    assert [v.level for v in violations_of(result, "backup-retention-minimum")] == ["advisory"]
    assert result.mandatory == []


def test_disabled_policy_reports_nothing(judge, strategy_resources):
    result = judge(strategy_resources.changed(PLAN, **plan_rule(lifecycle={"deleteAfter": 3})),
                   {"backup-retention-minimum": "disabled"})
    assert violations_of(result, "backup-retention-minimum") == []


# --- backup-retention-minimum ----------------------------------------------------------------------

def test_backup_rule_keeping_three_days_violates_retention_minimum(judge, strategy_resources):
    result = judge(strategy_resources.changed(PLAN, **plan_rule(lifecycle={"deleteAfter": 3})))
    [violation] = violations_of(result, "backup-retention-minimum")
    assert violation.message == ("backup rule 'daily' keeps recovery points 3 days; "
                                 "the strategy requires at least 7")
    assert violation.urn == strategy_resources.find(PLAN).urn
    assert violation.level == "mandatory"


def test_retention_minimum_comes_from_policy_config(judge, strategy_resources):
    result = judge(strategy_resources, {"backup-retention-minimum": {"minRetentionDays": 14}})
    [violation] = violations_of(result, "backup-retention-minimum")
    assert "keeps recovery points 7 days; the strategy requires at least 14" in violation.message


def test_short_lived_cross_region_copy_violates_retention_minimum(judge, strategy_resources):
    copy = {"destinationVaultArn": "arn:aws:backup:ap-southeast-1:123456789012:backup-vault:dr",
            "lifecycle": {"deleteAfter": 2}}
    result = judge(strategy_resources.changed(PLAN, **plan_rule(copyActions=[copy])))
    [violation] = violations_of(result, "backup-retention-minimum")
    assert "copy in arn:aws:backup:ap-southeast-1" in violation.message and "2 days" in violation.message


# --- backup-schedule-at-least-daily ----------------------------------------------------------------

def test_weekly_backup_schedule_violates_daily_rule(judge, strategy_resources):
    result = judge(strategy_resources.changed(PLAN, **plan_rule(schedule="cron(0 20 ? * SUN *)")))
    [violation] = violations_of(result, "backup-schedule-at-least-daily")
    assert "'cron(0 20 ? * SUN *)'" in violation.message


def test_twelve_hourly_rate_schedule_passes_daily_rule(judge, strategy_resources):
    result = judge(strategy_resources.changed(PLAN, **plan_rule(schedule="rate(12 hours)")))
    assert violations_of(result, "backup-schedule-at-least-daily") == []


# --- backup-vault-locked ---------------------------------------------------------------------------

def test_vault_without_lock_configuration_violates_vault_locked(judge, strategy_resources):
    result = judge(strategy_resources.without(VAULT_LOCK))
    [violation] = violations_of(result, "backup-vault-locked")
    assert violation.message.startswith("backup vault 'test-vault' has no vault lock configuration")
    assert violation.urn == strategy_resources.find(VAULT).urn


def test_vault_lock_with_three_day_minimum_violates_vault_locked(judge, strategy_resources):
    result = judge(strategy_resources.changed(VAULT_LOCK, minRetentionDays=3))
    [violation] = violations_of(result, "backup-vault-locked")
    assert "locked with min retention 3 days; the strategy requires at least 7" in violation.message


# --- backup-vault-deny-delete ----------------------------------------------------------------------

def test_vault_without_access_policy_violates_deny_delete(judge, strategy_resources):
    result = judge(strategy_resources.without(VAULT_POLICY))
    [violation] = violations_of(result, "backup-vault-deny-delete")
    assert "has no access policy" in violation.message


def test_conditional_deny_does_not_count_as_deny_delete(judge, strategy_resources):
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": {"AWS": "*"}, "Resource": "*", "Action": "backup:*",
        "Condition": {"StringNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/admin"}}}]}
    result = judge(strategy_resources.changed(VAULT_POLICY, policy=json.dumps(policy)))
    [violation] = violations_of(result, "backup-vault-deny-delete")
    assert "does not deny backup:DeleteRecoveryPoint" in violation.message


def test_wildcard_deny_to_everyone_satisfies_deny_delete(judge, strategy_resources):
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Resource": "*",
        "Action": ["backup:Delete*", "backup:UpdateRecoveryPointLifecycle", "backup:Put*"]}]}
    result = judge(strategy_resources.changed(VAULT_POLICY, policy=json.dumps(policy)))
    assert violations_of(result, "backup-vault-deny-delete") == []


# --- root-volume-in-backup-plan --------------------------------------------------------------------

def test_selection_of_another_instance_violates_root_volume_in_plan(judge, strategy_resources):
    other = f"arn:aws:ec2:ap-south-1:{ACCOUNT}:instance/i-0fffffffffffffff0"
    result = judge(strategy_resources.changed(SELECTION, resources=[other]))
    [violation] = violations_of(result, "root-volume-in-backup-plan")
    assert violation.message.startswith(f"instance {INSTANCE_ID} or root volume vol-0f1e2d3c4b5a69788 "
                                        "is not in any backup plan")


def test_instance_id_in_policy_config_overrides_stack_config(judge, strategy_resources):
    result = judge(strategy_resources, {"root-volume-in-backup-plan": {"instanceId": "i-0123456789abcdef0",
                                                                       "rootVolumeId": ""}})
    # rootVolumeId empty falls back to the stack's; the selection lists neither.
    assert "instance i-0123456789abcdef0" in violations_of(result, "root-volume-in-backup-plan")[0].message


def test_selection_by_root_volume_arn_satisfies_root_volume_in_plan(judge, strategy_resources):
    volume = f"arn:aws:ec2:ap-south-1:{ACCOUNT}:volume/vol-0f1e2d3c4b5a69788"
    result = judge(strategy_resources.changed(SELECTION, resources=[volume]))
    assert violations_of(result, "root-volume-in-backup-plan") == []


# --- recycle-bin-retention-minimum -----------------------------------------------------------------

def test_one_day_recycle_bin_violates_retention_minimum(judge, strategy_resources):
    result = judge(strategy_resources.changed(
        RBIN, retentionPeriod={"retentionPeriodUnit": "DAYS", "retentionPeriodValue": 1}))
    [violation] = violations_of(result, "recycle-bin-retention-minimum")
    assert violation.message == ("Recycle Bin rule 'rbin-snapshots' keeps deleted snapshots 1 days; "
                                 "the strategy requires at least 7 days")
    assert violation.urn == strategy_resources.find(RBIN).urn


def test_unlocked_recycle_bin_rule_violates_when_lock_required(judge, strategy_resources):
    result = judge(strategy_resources.changed(RBIN, lockConfiguration=None))
    [violation] = violations_of(result, "recycle-bin-retention-minimum")
    assert "is not locked" in violation.message


def test_unlocked_recycle_bin_rule_passes_when_lock_not_required(judge, strategy_resources):
    result = judge(strategy_resources.changed(RBIN, lockConfiguration=None),
                   {"recycle-bin-retention-minimum": {"requireLock": False}})
    assert violations_of(result, "recycle-bin-retention-minimum") == []


def test_missing_snapshot_recycle_bin_rule_violates_at_stack_level(judge, strategy_resources):
    result = judge(strategy_resources.without(RBIN))
    [violation] = violations_of(result, "recycle-bin-retention-minimum")
    assert violation.message.startswith("no Recycle Bin rule for EBS_SNAPSHOT")
    assert violation.urn == ""


# --- critical-resources-protected ------------------------------------------------------------------

@pytest.mark.parametrize("type_,name", [(VAULT, None), (VAULT_LOCK, None), (KEY, "vault-key"), (RBIN, None),
                                        (SNAPSHOT, None), (BUCKET, None)])
def test_unprotected_critical_resource_violates_protection(judge, strategy_resources, type_, name):
    result = judge(strategy_resources.changed(type_, name, protect=False))
    [violation] = violations_of(result, "critical-resources-protected")
    assert "has protect: false; the strategy requires protect: true" in violation.message
    assert violation.urn == strategy_resources.find(type_, name).urn


def test_unprotected_snapshot_lock_violates_protection(judge, strategy_resources):
    [lock] = [r for r in strategy_resources if "snapshot_id" in r.inputs]
    result = judge(strategy_resources.changed(lock.type, lock.name, protect=False))
    [violation] = violations_of(result, "critical-resources-protected")
    assert violation.message.startswith("snapshot lock 'baseline-lock'")


def test_unprotected_bucket_policy_is_not_a_critical_resource(judge, strategy_resources):
    result = judge(strategy_resources.changed(BUCKET_POLICY, protect=False))
    assert violations_of(result, "critical-resources-protected") == []


# --- baseline-snapshot-naming and -locked ----------------------------------------------------------

def test_baseline_named_with_impossible_date_violates_naming(judge, strategy_resources):
    result = judge(strategy_resources.changed(SNAPSHOT, tags={"Name": "prod-root-2026-02-30-before-upgrade"}))
    [violation] = violations_of(result, "baseline-snapshot-naming")
    assert "2026-02-30 is not a calendar date" in violation.message


def test_baseline_without_reason_violates_naming(judge, strategy_resources):
    result = judge(strategy_resources.changed(SNAPSHOT, tags={"Name": "prod-root-2026-11-20"}))
    [violation] = violations_of(result, "baseline-snapshot-naming")
    assert "required form prod-root-YYYY-MM-DD-before-<action>" in violation.message


def test_baseline_without_lock_violates_locked(judge, strategy_resources):
    [lock] = [r for r in strategy_resources if "snapshot_id" in r.inputs]
    result = judge(strategy_resources.without(lock.type, lock.name))
    [violation] = violations_of(result, "baseline-snapshot-locked")
    assert violation.message.startswith("baseline snapshot 'prod-root-2026-11-20-before-php-upgrade' has no "
                                        "snapshot lock")


# --- dump-bucket-hardened --------------------------------------------------------------------------

def test_suspended_versioning_violates_bucket_hardening(judge, strategy_resources):
    result = judge(strategy_resources.changed(VERSIONING, versioningConfiguration={"status": "Suspended"}))
    [violation] = violations_of(result, "dump-bucket-hardened")
    assert violation.message == ("bucket 'test-dumps' has versioning Suspended; "
                                 "the strategy requires Enabled")


def test_sse_s3_encryption_violates_bucket_hardening(judge, strategy_resources):
    result = judge(strategy_resources.changed(ENCRYPTION, rules=[
        {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]))
    [violation] = violations_of(result, "dump-bucket-hardened")
    assert "encrypts with AES256; the strategy requires SSE-KMS" in violation.message


def test_partial_public_access_block_violates_bucket_hardening(judge, strategy_resources):
    result = judge(strategy_resources.changed(PUBLIC_ACCESS_BLOCK, restrictPublicBuckets=False))
    [violation] = violations_of(result, "dump-bucket-hardened")
    assert "leaves restrictPublicBuckets off" in violation.message


def test_bucket_policy_without_tls_deny_violates_bucket_hardening(judge, strategy_resources):
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*",
                                                      "Action": "s3:DeleteObjectVersion", "Resource": "*"}]}
    result = judge(strategy_resources.changed(BUCKET_POLICY, policy=json.dumps(policy)))
    [violation] = violations_of(result, "dump-bucket-hardened")
    assert "aws:SecureTransport false" in violation.message


def test_bucket_without_policy_violates_bucket_hardening_twice(judge, strategy_resources):
    result = judge(strategy_resources.without(BUCKET_POLICY))
    messages = [v.message for v in violations_of(result, "dump-bucket-hardened")]
    assert len(messages) == 2 and "s3:DeleteObjectVersion" in messages[1]


# --- dump-retention-minimum ------------------------------------------------------------------------

def test_three_day_dump_expiry_violates_dump_retention(judge, strategy_resources):
    rule = {"id": "expire-mysql", "status": "Enabled", "expiration": {"days": 3},
            "noncurrentVersionExpiration": {"noncurrentDays": 7}}
    result = judge(strategy_resources.changed(LIFECYCLE, rules=[rule]))
    [violation] = violations_of(result, "dump-retention-minimum")
    assert violation.message == ("lifecycle rule 'expire-mysql' deletes dumps after 3 days; "
                                 "the strategy requires at least 7")


def test_one_day_noncurrent_expiry_violates_dump_retention(judge, strategy_resources):
    rule = {"id": "expire-mysql", "status": "Enabled", "expiration": {"days": 30},
            "noncurrentVersionExpiration": {"noncurrentDays": 1}}
    result = judge(strategy_resources.changed(LIFECYCLE, rules=[rule]))
    [violation] = violations_of(result, "dump-retention-minimum")
    assert "deletes old dump versions after 1 days" in violation.message


def test_disabled_lifecycle_rule_is_not_judged(judge, strategy_resources):
    rule = {"id": "old", "status": "Disabled", "expiration": {"days": 1}}
    result = judge(strategy_resources.changed(LIFECYCLE, rules=[rule]))
    assert violations_of(result, "dump-retention-minimum") == []


# --- binlog-retention-covers-dumps ----------------------------------------------------------------

def lifecycle_rule(rule_id, prefix, expire_days=None, **extra):
    rule = {"id": rule_id, "status": "Enabled", "filter": {"prefix": prefix} if prefix is not None else {},
            "noncurrentVersionExpiration": {"noncurrentDays": 7}, **extra}
    if expire_days is not None:
        rule["expiration"] = {"days": expire_days}
    return rule


DUMP_RULE = lifecycle_rule("expire-mysql", "mysql/", 30)


def binlog_violations(judge, resources, rules, policy_config=None):
    result = judge(resources.changed(LIFECYCLE, rules=rules), policy_config)
    return [v.message for v in violations_of(result, "binlog-retention-covers-dumps")]


def test_binlog_segments_kept_a_week_past_the_dumps_pass(judge, strategy_resources):
    rules = [DUMP_RULE, lifecycle_rule("expire-binlog", "binlog/", 37)]
    assert binlog_violations(judge, strategy_resources, rules) == []


def test_binlog_segments_kept_as_long_as_the_dumps_pass(judge, strategy_resources):
    rules = [DUMP_RULE, lifecycle_rule("expire-binlog", "binlog/", 30)]
    assert binlog_violations(judge, strategy_resources, rules) == []


def test_binlog_segments_expiring_before_the_dumps_violate(judge, strategy_resources):
    [message] = binlog_violations(judge, strategy_resources,
                                  [DUMP_RULE, lifecycle_rule("expire-binlog", "binlog/", 7)])
    assert message == ("lifecycle rule 'expire-binlog' expires binlog segments under binlog/ after 7 days; "
                       "rule 'expire-mysql' keeps mysql/ 30 days, and the strategy requires segments kept at "
                       "least as long (30 days)")


def test_a_bucket_wide_expiry_shorter_than_the_dumps_violates_even_with_a_good_binlog_rule(judge, strategy_resources):
    rules = [DUMP_RULE, lifecycle_rule("expire-binlog", "binlog/", 37), lifecycle_rule("expire-everything", None, 10)]
    [message] = binlog_violations(judge, strategy_resources, rules)
    assert message.startswith("lifecycle rule 'expire-everything' expires binlog segments under binlog/ after 10 days")


def test_a_narrower_rule_inside_the_binlog_prefix_violates(judge, strategy_resources):
    rules = [DUMP_RULE, lifecycle_rule("expire-binlog", "binlog/", 37),
             lifecycle_rule("old-chains", None, 5, filter={"and": {"prefix": "binlog/2026", "tags": {"a": "b"}}})]
    [message] = binlog_violations(judge, strategy_resources, rules)
    assert "'old-chains' expires binlog segments under binlog/ after 5 days" in message


def test_rules_for_other_prefixes_and_disabled_rules_do_not_count(judge, strategy_resources):
    rules = [DUMP_RULE, lifecycle_rule("expire-binlog", "binlog/", 37), lifecycle_rule("tmp", "tmp/", 7),
             {**lifecycle_rule("old", "binlog/", 3), "status": "Disabled"}]
    assert binlog_violations(judge, strategy_resources, rules) == []


def test_binlog_segments_may_outlive_dumps_kept_for_ever_only_by_never_expiring(judge, strategy_resources):
    forever = lifecycle_rule("keep-mysql", "mysql/")
    assert binlog_violations(judge, strategy_resources, [forever, lifecycle_rule("keep-binlog", "binlog/")]) == []
    [message] = binlog_violations(judge, strategy_resources, [forever, lifecycle_rule("expire-binlog", "binlog/", 400)])
    assert "rule 'keep-mysql' keeps mysql/ for ever" in message and message.endswith("(never expired)")


def test_a_fixed_expiry_date_on_the_binlog_prefix_violates(judge, strategy_resources):
    rule = lifecycle_rule("expire-binlog", "binlog/", expiration={"date": "2027-01-01T00:00:00Z"})
    [message] = binlog_violations(judge, strategy_resources, [DUMP_RULE, rule])
    assert "on a fixed date 2027-01-01T00:00:00Z" in message


def test_binlog_prefix_comes_from_policy_config(judge, strategy_resources):
    rules = [DUMP_RULE, lifecycle_rule("expire-binlog", "binlog/", 37), lifecycle_rule("expire-pitr", "pitr/", 7)]
    assert binlog_violations(judge, strategy_resources, rules) == []
    [message] = binlog_violations(judge, strategy_resources, rules,
                                  {"binlog-retention-covers-dumps": {"binlogPrefix": "pitr"}})
    assert message.startswith("lifecycle rule 'expire-pitr' expires binlog segments under pitr/ after 7 days")


def test_a_bucket_without_a_dump_rule_is_not_judged(judge, strategy_resources):
    rules = [lifecycle_rule("expire-cloudtrail-logs", "AWSLogs/", 90), lifecycle_rule("everything", None, 7)]
    assert binlog_violations(judge, strategy_resources, rules) == []


# --- no-force-destroy, kms-key-rotation, no-inline-secrets ------------------------------------------

@pytest.mark.parametrize("type_", [BUCKET, VAULT])
def test_force_destroy_violates_no_force_destroy(judge, strategy_resources, type_):
    result = judge(strategy_resources.changed(type_, forceDestroy=True))
    [violation] = violations_of(result, "no-force-destroy")
    assert "has forceDestroy: true" in violation.message


def test_key_without_rotation_violates_rotation(judge, strategy_resources):
    result = judge(strategy_resources.changed(KEY, "bucket-key", enableKeyRotation=False))
    [violation] = violations_of(result, "kms-key-rotation")
    assert violation.message == ("KMS key 'bucket-key' has enableKeyRotation False; "
                                 "the strategy requires true")


def test_mysqldump_with_literal_password_violates_no_inline_secrets(judge, strategy_resources):
    content = run_command("mysqldump -u backup -pHunter2 quickport > /tmp/d.sql")
    result = judge(strategy_resources.changed(DOCUMENT, content=content))
    [violation] = violations_of(result, "no-inline-secrets")
    assert "password on a database client's command line (-p" in violation.message


def test_option_file_line_with_literal_password_violates_no_inline_secrets(judge, strategy_resources):
    content = run_command("printf '[client]\\n' > /run/b.cnf", "password=Hunter2")
    result = judge(strategy_resources.changed(DOCUMENT, content=content))
    [violation] = violations_of(result, "no-inline-secrets")
    assert "literal password assignment" in violation.message


def test_password_in_plain_string_parameter_violates_no_inline_secrets(judge, strategy_resources):
    result = judge(strategy_resources.changed(PARAMETER, type="String"))
    [violation] = violations_of(result, "no-inline-secrets")
    assert "has type String; a password must be a SecureString" in violation.message


# --- values unknown at preview -----------------------------------------------------------------------

def test_unknown_policy_document_is_reported_as_advisory_not_passed(judge, strategy_resources):
    from pulumi.output import Unknown
    result = judge(strategy_resources.changed(VAULT_POLICY, policy=Unknown()))
    [violation] = violations_of(result, "backup-vault-deny-delete")
    assert violation.level == "advisory"
    assert "can't run policy 'backup-vault-deny-delete'" in violation.message
    assert "string value at .policy can't be known during preview" in violation.message


def test_unknown_snapshot_id_does_not_stop_the_lock_protection_check(judge, strategy_resources):
    from pulumi.output import Unknown
    [lock] = [r for r in strategy_resources if "snapshot_id" in r.inputs]
    result = judge(strategy_resources.changed(lock.type, lock.name, protect=False, snapshot_id=Unknown()))
    [violation] = violations_of(result, "critical-resources-protected")
    assert violation.level == "mandatory" and violation.message.startswith("snapshot lock 'baseline-lock'")


# --- dump-bucket-object-lock ---------------------------------------------------------------------

def test_bucket_without_object_lock_violates_object_lock(judge, strategy_resources):
    result = judge(strategy_resources.without(OBJECT_LOCK))
    [violation] = violations_of(result, "dump-bucket-object-lock")
    assert violation.message.startswith("bucket 'test-dumps' has no Object Lock configuration; the strategy "
                                        "requires default retention (GOVERNANCE or COMPLIANCE) of at least 7 days")
    assert violation.urn == strategy_resources.find(BUCKET).urn and violation.level == "mandatory"


def test_three_day_default_retention_violates_object_lock(judge, strategy_resources):
    result = judge(strategy_resources.changed(OBJECT_LOCK, rule={"defaultRetention": {"mode": "GOVERNANCE",
                                                                                     "days": 3}}))
    [violation] = violations_of(result, "dump-bucket-object-lock")
    assert violation.message == "bucket 'test-dumps' locks versions for 3 days; the strategy requires at least 7"


def test_object_lock_without_default_retention_violates_object_lock(judge, strategy_resources):
    result = judge(strategy_resources.changed(OBJECT_LOCK, rule=None))
    [violation] = violations_of(result, "dump-bucket-object-lock")
    assert "without a default retention" in violation.message


def test_retention_in_years_and_compliance_mode_pass_object_lock(judge, strategy_resources):
    result = judge(strategy_resources.changed(OBJECT_LOCK, rule={"defaultRetention": {"mode": "COMPLIANCE",
                                                                                     "years": 1}}))
    assert violations_of(result, "dump-bucket-object-lock") == []


def test_object_lock_modes_come_from_policy_config(judge, strategy_resources):
    result = judge(strategy_resources, {"dump-bucket-object-lock": {"modes": ["COMPLIANCE"]}})
    [violation] = violations_of(result, "dump-bucket-object-lock")
    assert "locks versions in mode GOVERNANCE; the strategy allows COMPLIANCE" in violation.message


def test_unprotected_object_lock_configuration_violates_protection(judge, strategy_resources):
    result = judge(strategy_resources.changed(OBJECT_LOCK, protect=False))
    [violation] = violations_of(result, "critical-resources-protected")
    assert violation.message.startswith("S3 Object Lock configuration 'dumps-object-lock' has protect: false")


# --- operator-guard-rails-attached ---------------------------------------------------------------

def test_guard_rail_policy_attached_to_nobody_violates_attached(judge, strategy_resources):
    result = judge(strategy_resources.without(GROUP_ATTACHMENT))
    [violation] = violations_of(result, "operator-guard-rails-attached")
    assert violation.message.startswith("IAM policy 'quickport-backup-operator-guard-rails' is attached to nobody")
    assert violation.urn == strategy_resources.find(IAM_POLICY).urn


def test_missing_guard_rail_policy_violates_attached(judge, strategy_resources):
    result = judge(strategy_resources.without(GROUP_ATTACHMENT).without(IAM_POLICY))
    [violation] = violations_of(result, "operator-guard-rails-attached")
    assert "declares no IAM policy named 'quickport-backup-operator-guard-rails'" in violation.message


def test_attachment_of_another_policy_does_not_count(judge, strategy_resources):
    import dataclasses
    other = "arn:aws:iam::123456789012:policy/ReadOnly"
    changed = strategy_resources.changed(GROUP_ATTACHMENT, policyArn=other)
    # A literal ARN: no property dependency on the guard-rail policy either.
    resources = type(changed)(dataclasses.replace(r, property_dependencies={}) if r.type == GROUP_ATTACHMENT else r
                              for r in changed)
    [violation] = violations_of(judge(resources), "operator-guard-rails-attached")
    assert "is attached to nobody" in violation.message


def test_guard_rail_policy_name_comes_from_policy_config(judge, strategy_resources):
    result = judge(strategy_resources, {"operator-guard-rails-attached": {"policyName": "ops-deny"}})
    [violation] = violations_of(result, "operator-guard-rails-attached")
    assert "no IAM policy named 'ops-deny'" in violation.message


# --- locked copies; the air-gapped vault counts as locked ---------------------------------------

def _with_air_gapped_copy(resources, min_days=7):
    """The strategy with a logically air-gapped vault the daily rule copies to."""
    import dataclasses

    from scripts.offline.engine import DeclaredResource
    vault = resources.find(VAULT)
    lag = DeclaredResource(
        type=AIR_GAPPED, name="air-gapped", urn=vault.urn.replace(VAULT, AIR_GAPPED).replace("::vault", "::air-gapped"),
        parent=vault.parent, custom=True, protect=True, retain_on_delete=False,
        inputs={"name": "test-air-gapped", "minRetentionDays": min_days, "maxRetentionDays": 35},
        outputs={"name": "test-air-gapped", "minRetentionDays": min_days, "maxRetentionDays": 35, "arn": LAG_ARN},
        id="air-gapped-id")
    copy = {"destinationVaultArn": LAG_ARN, "lifecycle": {"deleteAfter": 7}}
    changed = resources.changed(PLAN, **plan_rule(copyActions=[copy]))
    return type(resources)([*changed, dataclasses.replace(lag)])


def test_copy_into_an_air_gapped_vault_counts_as_locked(judge, strategy_resources):
    result = judge(_with_air_gapped_copy(strategy_resources))
    assert violations_of(result, "backup-vault-locked") == []
    assert violations_of(result, "backup-vault-deny-delete") == []   # AWS locks it; no access policy needed


def test_air_gapped_vault_with_short_minimum_violates_vault_locked(judge, strategy_resources):
    result = judge(_with_air_gapped_copy(strategy_resources, min_days=3))
    messages = [v.message for v in violations_of(result, "backup-vault-locked")]
    assert any(m.startswith("logically air-gapped vault 'test-air-gapped' keeps recovery points at least 3 days")
               for m in messages)


def test_copy_into_a_vault_the_stack_does_not_lock_violates_vault_locked(judge, strategy_resources):
    copy = {"destinationVaultArn": "arn:aws:backup:ap-southeast-1:123456789012:backup-vault:dr",
            "lifecycle": {"deleteAfter": 7}}
    result = judge(strategy_resources.changed(PLAN, **plan_rule(copyActions=[copy])))
    [violation] = violations_of(result, "backup-vault-locked")
    assert "copies to arn:aws:backup:ap-southeast-1:123456789012:backup-vault:dr, which is not a locked vault" \
        in violation.message


def test_unprotected_air_gapped_vault_violates_protection(judge, strategy_resources):
    resources = _with_air_gapped_copy(strategy_resources)
    result = judge(resources.changed(AIR_GAPPED, protect=False))
    [violation] = violations_of(result, "critical-resources-protected")
    assert violation.message.startswith("logically air-gapped vault 'air-gapped' has protect: false")


# --- the Recycle Bin rule lock resource ------------------------------------------------------------

def test_locked_rule_without_a_rule_lock_resource_violates_recycle_bin(judge, strategy_resources):
    [lock] = [r for r in strategy_resources if "rule_id" in r.inputs]
    result = judge(strategy_resources.without(lock.type, lock.name))
    [violation] = violations_of(result, "recycle-bin-retention-minimum")
    assert "has no rule-lock resource" in violation.message and "rbin:LockRule" in violation.message


def test_unprotected_rule_lock_violates_protection(judge, strategy_resources):
    [lock] = [r for r in strategy_resources if "rule_id" in r.inputs]
    result = judge(strategy_resources.changed(lock.type, lock.name, protect=False))
    [violation] = violations_of(result, "critical-resources-protected")
    assert violation.message.startswith("Recycle Bin rule lock 'rbin-snapshots-lock' has protect: false")
