"""DumpBucket: the private, encrypted, versioned S3 bucket for nightly database dumps and P1 files.

Seed rules: zero data loss (a logical dump survives a broken volume and a broken AMI), protection
from human error (versioning, deny DeleteObjectVersion, protect=True, no force_destroy) and data
stays private (all public access blocked, TLS only, SSE-KMS with a rotating customer managed key).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws

from components.backup_vault import rotating_key
from components.config import StackConfig
from components.naming import RESTORES_PREFIX
from components.tags import STRATEGY_TAGS

TYPE_TOKEN = "quickport:backup:DumpBucket"
MIN_NONCURRENT_DAYS = 7  # a overwritten/deleted dump stays recoverable for at least a week


@dataclass(frozen=True)
class DumpBucketArgs:
    bucket_name: str                       # globally unique S3 bucket name
    prefix: str = "mysql"                  # database dumps live under <prefix>/
    files_prefix: str = "files"            # P1 file archives live under <files_prefix>/
    retention_days: int = 30               # current dumps expire after this many days
    noncurrent_retention_days: int = 7     # overwritten/deleted versions kept max(7, this) days
    abort_incomplete_upload_days: int = 1  # a failed multipart dump stops costing money after a day

    @classmethod
    def from_config(cls, cfg: StackConfig) -> "DumpBucketArgs":
        d = cfg.dumps
        return cls(bucket_name=d.bucket_name, prefix=d.prefix, files_prefix=d.files_prefix,
                   retention_days=d.retention_days, noncurrent_retention_days=d.noncurrent_retention_days)


def bucket_policy_document(bucket_arn: pulumi.Input[str]) -> pulumi.Output[str]:
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
        ],
    })


class DumpBucket(pulumi.ComponentResource):
    """S3 bucket + versioning, SSE-KMS, public access block, ownership, policy and lifecycle."""

    def __init__(self, name: str, args: DumpBucketArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        kept = pulumi.ResourceOptions(parent=self, protect=True)

        # Its own key rather than the vault's: the instance role must use this one, and should not
        # be able to use the key that protects the AWS Backup vault.
        self.key, self.key_alias = rotating_key(
            f"{name}-key", f"Encrypts database dumps and files in s3://{args.bucket_name}", args.bucket_name,
            child)

        self.bucket = aws.s3.Bucket(
            f"{name}-bucket", bucket=args.bucket_name, force_destroy=False, tags=STRATEGY_TAGS,
            opts=kept)
        bucket_id = self.bucket.id

        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block", bucket=bucket_id,
            block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child)
        self.ownership = aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=bucket_id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child)
        self.versioning = aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=bucket_id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=child)
        self.encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=bucket_id,
            rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.
                BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="aws:kms", kms_master_key_id=self.key.arn),
                # One data key per bucket instead of per object: far fewer KMS calls, same protection.
                bucket_key_enabled=True)],
            opts=child)
        self.policy = aws.s3.BucketPolicy(
            f"{name}-policy", bucket=bucket_id, policy=bucket_policy_document(self.bucket.arn),
            # S3 rejects a policy while the public access block is being changed.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.public_access_block]))

        noncurrent_days = max(MIN_NONCURRENT_DAYS, args.noncurrent_retention_days)
        self.lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=bucket_id,
            rules=[aws.s3.BucketLifecycleConfigurationRuleArgs(
                id=f"expire-{prefix.replace('/', '-')}",
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=f"{prefix}/"),
                expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=args.retention_days),
                noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=noncurrent_days),
                abort_incomplete_multipart_upload=aws.s3.
                BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                    days_after_initiation=args.abort_incomplete_upload_days),
            ) for prefix in (args.prefix, args.files_prefix)] + [
                # restore-files hand-offs are ciphertext whose key died with the CLI run; a week's
                # expiry keeps the bucket tidy without going under the 7-day retention floor.
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id=f"expire-{RESTORES_PREFIX}",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=f"{RESTORES_PREFIX}/"),
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=MIN_NONCURRENT_DAYS),
                    noncurrent_version_expiration=aws.s3.
                    BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(noncurrent_days=noncurrent_days),
                    abort_incomplete_multipart_upload=aws.s3.
                    BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=args.abort_incomplete_upload_days))],
            # Versioning first: expiring current versions of an unversioned bucket deletes them.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.versioning]))

        self.bucket_name = self.bucket.bucket
        self.bucket_arn = self.bucket.arn
        self.key_arn = self.key.arn
        self.register_outputs({"bucketName": self.bucket_name, "bucketArn": self.bucket_arn,
                               "keyArn": self.key_arn})
