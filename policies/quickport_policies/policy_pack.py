"""The pack's policies: name, what a reviewer reads, which rule function, which config knobs.

Knob defaults are the strategy's values (rules.DEFAULTS); the Pulumi CLI fills them in and validates
`--policy-pack-config` against these JSON schemas before calling Configure.
"""
from __future__ import annotations

from typing import Any, Optional

from pulumi_policy import PolicyConfigSchema, ResourceValidationPolicy, Severity, StackValidationPolicy

from . import rules
from .rules import DEFAULTS

PACK_NAME = "quickport-backup-policies"

_DAYS = {"type": "integer", "minimum": 1, "maximum": 36500}
_KNOB_SCHEMAS: dict[str, dict[str, dict[str, Any]]] = {
    "backup-retention-minimum": {
        "minRetentionDays": {**_DAYS, "description": "fewest days a recovery point is kept"}},
    "backup-vault-locked": {
        "minRetentionDays": {**_DAYS, "description": "lowest min retention the vault lock may allow"}},
    "backup-vault-deny-delete": {
        "deniedActions": {"type": "array", "items": {"type": "string", "pattern": "^backup:[A-Za-z*]+$"},
                          "minItems": 1, "description": "actions the vault policy must deny to '*'"}},
    "root-volume-in-backup-plan": {
        "instanceId": {"type": "string", "pattern": "^(i-[0-9a-f]{8,17})?$",
                       "description": "production instance; empty: the stack's quickport-backup:instanceId"},
        "rootVolumeId": {"type": "string", "pattern": "^(vol-[0-9a-f]{8,17})?$",
                         "description": "root volume; empty: the stack's quickport-backup:rootVolumeId"}},
    "recycle-bin-retention-minimum": {
        "minRetentionDays": {**_DAYS, "maximum": 3650, "description": "fewest days a deleted snapshot is kept"},
        "requireLock": {"type": "boolean", "description": "the rule must be locked"},
        "minUnlockDelayDays": {"type": "integer", "minimum": 7, "maximum": 30,
                               "description": "fewest days between unlock request and unlock"}},
    "baseline-snapshot-naming": {
        "prefix": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$", "description": "name prefix"},
        "actionMaxLength": {"type": "integer", "minimum": 1, "maximum": 128,
                            "description": "longest <action> in the name"}},
    "dump-bucket-hardened": {
        "sseAlgorithms": {"type": "array", "minItems": 1,
                          "items": {"type": "string", "enum": ["aws:kms", "aws:kms:dsse"]},
                          "description": "server-side encryption algorithms accepted"}},
    "dump-bucket-object-lock": {
        "minRetentionDays": {**_DAYS, "minimum": 7, "description": "fewest days a version is locked"},
        "modes": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": ["GOVERNANCE", "COMPLIANCE"]},
                  "description": "Object Lock modes accepted"}},
    "operator-guard-rails-attached": {
        "policyName": {"type": "string", "pattern": "^[\\w+=,.@-]{1,128}$",
                       "description": "name of the operators' deny-only IAM policy"}},
    "binlog-retention-covers-dumps": {
        "dumpPrefix": {"type": "string", "pattern": "^([a-z0-9._-]+(/[a-z0-9._-]+)*)?$",
                       "description": "key prefix of the dumps; empty: the stack's quickport-backup:dumps.prefix"},
        "binlogPrefix": {"type": "string", "pattern": "^([a-z0-9._-]+(/[a-z0-9._-]+)*)?$",
                         "description": "key prefix of the binlog segments; empty: the stack's "
                                        "quickport-backup:binlog.prefix"}},
    "dump-retention-minimum": {
        "minRetentionDays": {**_DAYS, "description": "fewest days a dump is kept"},
        "minNoncurrentDays": {**_DAYS, "description": "fewest days an overwritten dump version is kept"}},
}


def _schema(policy: str) -> Optional[PolicyConfigSchema]:
    knobs = _KNOB_SCHEMAS.get(policy)
    if not knobs:
        return None
    return PolicyConfigSchema(properties={k: {**v, "default": DEFAULTS[policy][k]} for k, v in knobs.items()})


def _resource(name: str, description: str, validate, severity: Severity = Severity.HIGH):
    return ResourceValidationPolicy(name=name, description=description, validate=validate,
                                    config_schema=_schema(name), severity=severity)


def _stack(name: str, description: str, validate, severity: Severity = Severity.HIGH):
    return StackValidationPolicy(name=name, description=description, validate=validate,
                                 config_schema=_schema(name), severity=severity)


POLICIES = [
    _resource("backup-retention-minimum",
              "Every AWS Backup plan rule (and its copies) keeps recovery points at least minRetentionDays.",
              rules.backup_retention_minimum, Severity.CRITICAL),
    _resource("backup-schedule-at-least-daily",
              "Every AWS Backup plan rule runs at least once every day.",
              rules.backup_schedule_at_least_daily),
    _stack("backup-vault-locked",
           "Every backup vault has a vault lock whose min retention is at least minRetentionDays (a logically "
           "air-gapped vault is locked by AWS: its own min retention counts), and every copy lands in one.",
           rules.backup_vault_locked, Severity.CRITICAL),
    _stack("backup-vault-deny-delete",
           "Every backup vault has an access policy denying recovery-point deletion, lifecycle changes "
           "and policy changes to everyone, without conditions.",
           rules.backup_vault_deny_delete, Severity.CRITICAL),
    _stack("root-volume-in-backup-plan",
           "A backup selection lists the production instance or its root volume by ARN.",
           rules.root_volume_in_backup_plan, Severity.CRITICAL),
    _stack("recycle-bin-retention-minimum",
           "A Recycle Bin rule for EBS snapshots exists, keeps them at least minRetentionDays and, "
           "when requireLock, is locked with an unlock delay of at least minUnlockDelayDays by a rule-lock "
           "resource that calls rbin:LockRule.",
           rules.recycle_bin_retention_minimum),
    _resource("critical-resources-protected",
              "Vaults (air-gapped too), vault locks, KMS keys, Recycle Bin rules and their locks, baseline "
              "snapshots and their locks, S3 buckets and their Object Lock configurations carry protect: true.",
              rules.critical_resources_protected),
    _resource("baseline-snapshot-naming",
              "Baseline snapshots are named <prefix>-YYYY-MM-DD-before-<action> with a real date.",
              rules.baseline_snapshot_naming, Severity.MEDIUM),
    _stack("baseline-snapshot-locked",
           "Every baseline snapshot has an EC2 snapshot lock resource.",
           rules.baseline_snapshot_locked),
    _stack("dump-bucket-hardened",
           "Every S3 bucket is versioned, SSE-KMS encrypted, blocks all public access, cannot be "
           "force-destroyed and has a policy denying non-TLS access and object-version deletion.",
           rules.dump_bucket_hardened, Severity.CRITICAL),
    _stack("dump-bucket-object-lock",
           "Every S3 bucket has S3 Object Lock with a default retention (GOVERNANCE or COMPLIANCE) of at least "
           "minRetentionDays on every version.",
           rules.dump_bucket_object_lock, Severity.CRITICAL),
    _stack("operator-guard-rails-attached",
           "The operators' deny-only IAM policy (policyName) exists and is attached to at least one group, role "
           "or user.",
           rules.operator_guard_rails_attached, Severity.HIGH),
    _resource("dump-retention-minimum",
              "S3 lifecycle rules keep objects at least minRetentionDays and noncurrent versions at "
              "least minNoncurrentDays.",
              rules.dump_retention_minimum),
    _stack("binlog-retention-covers-dumps",
           "In the dump bucket no lifecycle rule reaching the binlog prefix (its own, bucket-wide or narrower) "
           "expires binlog segments sooner than the dump rule keeps dumps: every kept dump stays extendable "
           "to any second after it.",
           rules.binlog_retention_covers_dumps, Severity.CRITICAL),
    _resource("no-force-destroy",
              "No S3 bucket or backup vault can be force-destroyed.",
              rules.no_force_destroy, Severity.CRITICAL),
    _resource("kms-key-rotation",
              "Every KMS key rotates its key material yearly.",
              rules.kms_key_rotation, Severity.MEDIUM),
    _resource("no-inline-secrets",
              "No SSM document or parameter holds a literal password or puts one on a command line.",
              rules.no_inline_secrets, Severity.CRITICAL),
]
