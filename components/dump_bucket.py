"""DumpBucket: the private, encrypted, versioned S3 bucket for nightly database dumps and P1 files.

Seed rules: zero data loss (a logical dump survives a broken volume and a broken AMI), protection
from human error (versioning, deny DeleteObjectVersion, protect=True, no force_destroy) and data
stays private (all public access blocked, TLS only, SSE-KMS with a rotating customer managed key),
and S3 Object Lock: no version can be deleted before its default retention ends, whatever policy an
administrator writes (compliance mode: not even the root user).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.backup_vault import rotating_key
from components.config import ObjectLock, StackConfig
from components.naming import RESTORES_PREFIX
from components.tags import STRATEGY_TAGS

TYPE_TOKEN = "quickport:backup:DumpBucket"
MIN_NONCURRENT_DAYS = 7  # a overwritten/deleted dump stays recoverable for at least a week
# S3 exempts the account's root user from a bucket policy's Deny of these three (so that no policy
# can lock the owner out): denying Put/Delete to everyone leaves root as the documented way back.
POLICY_SELF_PROTECTION = ("s3:PutBucketPolicy", "s3:DeleteBucketPolicy")


@dataclass(frozen=True)
class ExpiryRule:
    """One lifecycle rule of a hardened bucket: what lives under `prefix` expires after `days`."""
    rule_id: str
    prefix: str
    days: int


@dataclass(frozen=True)
class DumpBucketArgs:
    bucket_name: str                       # globally unique S3 bucket name
    prefix: str = "mysql"                  # database dumps live under <prefix>/
    files_prefix: str = "files"            # P1 file archives live under <files_prefix>/
    retention_days: int = 30               # current dumps expire after this many days
    noncurrent_retention_days: int = 7     # overwritten/deleted versions kept max(7, this) days
    abort_incomplete_upload_days: int = 1  # a failed multipart dump stops costing money after a day
    binlog_prefix: str = "binlog"          # point-in-time binlog segments live under <binlog_prefix>/
    binlog_retention_days: int = 37        # current segments expire after this (>= retention_days: they
                                           # extend every dump that is kept; policy binlog-retention-covers-dumps)
    # Default retention of every version written (dumps, manifests, latest.json, file archives,
    # binlog segments): governance for the dump retention days.
    object_lock: ObjectLock = field(default_factory=ObjectLock)

    @classmethod
    def from_config(cls, cfg: StackConfig) -> "DumpBucketArgs":
        d = cfg.dumps
        return cls(bucket_name=d.bucket_name, prefix=d.prefix, files_prefix=d.files_prefix,
                   retention_days=d.retention_days, noncurrent_retention_days=d.noncurrent_retention_days,
                   binlog_prefix=cfg.binlog.prefix, binlog_retention_days=cfg.binlog.retention_days,
                   object_lock=d.object_lock)


def bucket_policy_document(bucket_arn: pulumi.Input[str],
                           extra_statements: Sequence[Any] = ()) -> pulumi.Output[str]:
    objects = pulumi.Output.concat(bucket_arn, "/*")
    return pulumi.Output.json_dumps({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, objects],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            {
                # Old versions are the undo history; only the lifecycle rule may expire them.
                "Sid": "DenyObjectVersionDeletion",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:DeleteObjectVersion",
                "Resource": objects,
            },
            {
                # Nobody but the account's root user (S3's documented exception) can replace or
                # remove this policy: the break-glass path is root, and the change alerts.
                "Sid": "DenyPolicyChangesExceptByRoot",
                "Effect": "Deny",
                "Principal": "*",
                "Action": list(POLICY_SELF_PROTECTION),
                "Resource": bucket_arn,
            },
            *extra_statements,
        ],
    })


@dataclass
class HardenedBucket:
    """The resources `hardened_bucket` declares, for callers and tests."""
    bucket: aws.s3.Bucket
    public_access_block: aws.s3.BucketPublicAccessBlock
    ownership: aws.s3.BucketOwnershipControls
    versioning: aws.s3.BucketVersioning
    encryption: aws.s3.BucketServerSideEncryptionConfiguration
    object_lock: aws.s3.BucketObjectLockConfiguration
    policy: aws.s3.BucketPolicy
    lifecycle: aws.s3.BucketLifecycleConfiguration


def hardened_bucket(owner: pulumi.Resource, name: str, bucket_name: str, key_arn: pulumi.Input[str], *,
                    object_lock: ObjectLock, expiry: Sequence[ExpiryRule], noncurrent_days: int,
                    abort_incomplete_upload_days: int = 1,
                    extra_policy_statements: Sequence[Any] = ()) -> HardenedBucket:
    """A private S3 bucket every version of which is locked, encrypted with `key_arn`, TLS-only, with
    version deletion and policy changes denied, and a lifecycle (children of `owner`, named from `name`).

    Object Lock goes on through PutObjectLockConfiguration after versioning (the provider's
    BucketObjectLockConfiguration), never through the Bucket's `object_lock_enabled`: that argument
    forces a new bucket, and the dump bucket exists and holds the only copies of the dumps. Leaving it
    unset (it is Optional + Computed upstream) makes no diff once the bucket reports Object Lock on.
    """
    child = pulumi.ResourceOptions(parent=owner)
    bucket = aws.s3.Bucket(f"{name}-bucket", bucket=bucket_name, force_destroy=False, tags=STRATEGY_TAGS,
                           opts=pulumi.ResourceOptions(parent=owner, protect=True))
    bucket_id = bucket.id
    public_access_block = aws.s3.BucketPublicAccessBlock(
        f"{name}-public-access-block", bucket=bucket_id,
        block_public_acls=True, block_public_policy=True,
        ignore_public_acls=True, restrict_public_buckets=True, opts=child)
    ownership = aws.s3.BucketOwnershipControls(
        f"{name}-ownership", bucket=bucket_id,
        rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        opts=child)
    versioning = aws.s3.BucketVersioning(
        f"{name}-versioning", bucket=bucket_id,
        versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
        opts=child)
    encryption = aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-encryption", bucket=bucket_id,
        rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
            apply_server_side_encryption_by_default=aws.s3.
            BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                sse_algorithm="aws:kms", kms_master_key_id=key_arn),
            # One data key per bucket instead of per object: far fewer KMS calls, same protection.
            bucket_key_enabled=True)],
        opts=child)
    # Object Lock needs versioning first; once on, it can never be turned off (nor versioning
    # suspended). Protected: deleting this resource would remove the default retention.
    lock = aws.s3.BucketObjectLockConfiguration(
        f"{name}-object-lock", bucket=bucket_id, object_lock_enabled="Enabled",
        rule={"default_retention": {"mode": object_lock.mode.upper(), "days": object_lock.days}},
        opts=pulumi.ResourceOptions(parent=owner, protect=True, depends_on=[versioning]))
    policy = aws.s3.BucketPolicy(
        f"{name}-policy", bucket=bucket_id,
        policy=bucket_policy_document(bucket.arn, extra_policy_statements),
        # S3 rejects a policy while the public access block is being changed.
        opts=pulumi.ResourceOptions(parent=owner, depends_on=[public_access_block]))
    noncurrent = aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
        noncurrent_days=noncurrent_days)
    lifecycle = aws.s3.BucketLifecycleConfiguration(
        f"{name}-lifecycle", bucket=bucket_id,
        rules=[
            # Bucket-wide (an empty filter): an upload anywhere that never completes stops costing
            # money (Checkov CKV_AWS_300 looks for exactly this rule).
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="abort-incomplete-multipart-uploads",
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(),
                abort_incomplete_multipart_upload=aws.s3.
                BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                    days_after_initiation=abort_incomplete_upload_days)),
            *(aws.s3.BucketLifecycleConfigurationRuleArgs(
                id=rule.rule_id,
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=f"{rule.prefix}/"),
                # Expiry only adds a delete marker; a locked version outlives it until its lock ends.
                expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=rule.days),
                noncurrent_version_expiration=noncurrent,
            ) for rule in expiry)],
        # Versioning first: expiring current versions of an unversioned bucket deletes them.
        opts=pulumi.ResourceOptions(parent=owner, depends_on=[versioning]))
    return HardenedBucket(bucket, public_access_block, ownership, versioning, encryption, lock, policy,
                          lifecycle)


class DumpBucket(pulumi.ComponentResource):
    """S3 bucket + versioning, SSE-KMS, Object Lock, public access block, ownership, policy, lifecycle."""

    def __init__(self, name: str, args: DumpBucketArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        # Its own key rather than the vault's: the instance role must use this one, and should not
        # be able to use the key that protects the AWS Backup vault.
        self.key, self.key_alias = rotating_key(
            f"{name}-key", f"Encrypts database dumps and files in s3://{args.bucket_name}", args.bucket_name,
            child)

        expiry = [ExpiryRule(f"expire-{prefix.replace('/', '-')}", prefix, args.retention_days)
                  for prefix in (args.prefix, args.files_prefix)]
        # restore-files hand-offs are ciphertext whose key died with the CLI run; a week's expiry keeps
        # the bucket tidy without going under the 7-day retention floor.
        expiry.append(ExpiryRule(f"expire-{RESTORES_PREFIX}", RESTORES_PREFIX, MIN_NONCURRENT_DAYS))
        # Declared whether or not binlog.enabled: segments shipped while it was on still expire. The
        # Object Lock default retention (dumps.objectLock.days) holds each segment version that long
        # whatever this rule says; the rule only decides when it stops being current.
        expiry.append(ExpiryRule(f"expire-{args.binlog_prefix.replace('/', '-')}", args.binlog_prefix,
                                 args.binlog_retention_days))
        parts = hardened_bucket(
            self, name, args.bucket_name, self.key.arn, object_lock=args.object_lock, expiry=expiry,
            noncurrent_days=max(MIN_NONCURRENT_DAYS, args.noncurrent_retention_days),
            abort_incomplete_upload_days=args.abort_incomplete_upload_days)
        self.bucket, self.public_access_block = parts.bucket, parts.public_access_block
        self.ownership, self.versioning, self.encryption = parts.ownership, parts.versioning, parts.encryption
        self.object_lock, self.policy, self.lifecycle = parts.object_lock, parts.policy, parts.lifecycle

        self.bucket_name = self.bucket.bucket
        self.bucket_arn = self.bucket.arn
        self.key_arn = self.key.arn
        self.register_outputs({"bucketName": self.bucket_name, "bucketArn": self.bucket_arn,
                               "keyArn": self.key_arn})
