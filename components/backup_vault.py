"""BackupVault: where AWS Backup keeps the daily recovery points, locked and watched.

Seed rules: zero data loss (recovery points nobody can delete early), protection from human error
(vault lock, deny-delete vault policy, protect=True), and a person hears about failed jobs (SNS).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.config import StackConfig, VaultLock
from components.tags import STRATEGY_TAGS

TYPE_TOKEN = "quickport:backup:BackupVault"

# What AWS Backup Audit Manager's BACKUP_RECOVERY_POINT_MANUAL_DELETION_DISABLED control looks for:
# a Deny of these actions to every principal on every resource of the vault.
VAULT_DENIED_ACTIONS = (
    "backup:DeleteRecoveryPoint",
    "backup:UpdateRecoveryPointLifecycle",
    "backup:PutBackupVaultAccessPolicy",
)

# BACKUP_JOB_FAILED and RESTORE_JOB_FAILED are in the API's enum but AWS documents them as deprecated
# ("will not return statuses or notifications"). Failed backups and restores arrive as *_COMPLETED
# with a State message attribute; the email subscription filters on it (ALERT_FILTER_POLICY).
VAULT_EVENTS = ("BACKUP_JOB_COMPLETED", "COPY_JOB_FAILED", "RESTORE_JOB_COMPLETED")
# Every message whose State is not COMPLETED: FAILED, ABORTED, EXPIRED, PARTIAL ...
ALERT_FILTER_POLICY = {"State": [{"anything-but": "COMPLETED"}]}


@dataclass(frozen=True)
class BackupVaultArgs:
    vault_name: str                                   # the AWS Backup vault's name
    lock: VaultLock = field(default_factory=VaultLock)  # governance, 7..35 days
    alert_email: Optional[str] = None                 # None: no email subscription (topic still exists)
    key_deletion_window_days: int = 30                # the longest AWS allows, in case of a mistaken delete

    @classmethod
    def from_config(cls, cfg: StackConfig) -> "BackupVaultArgs":
        return cls(vault_name=cfg.backup.vault_name, lock=cfg.backup.vault_lock,
                   alert_email=cfg.backup.alert_email)


def key_policy_allowing_services(services: tuple[str, ...],
                                 extra_statements: Sequence[Any] = ()) -> pulumi.Output[str]:
    """The default key policy (the account's IAM decides) plus data-key use by the given services,
    plus `extra_statements` (service statements with conditions).

    A service principal can only use a customer managed key its key policy names; AWS Backup needs it
    to publish to the KMS-encrypted alert topic.
    """
    identity = aws.get_caller_identity_output()
    partition = aws.get_partition_output()
    statements = [{
        "Sid": "EnableIamPolicies",
        "Effect": "Allow",
        "Principal": {"AWS": pulumi.Output.concat("arn:", partition.partition, ":iam::",
                                                  identity.account_id, ":root")},
        "Action": "kms:*",
        "Resource": "*",
    }]
    if services:
        statements.append({
            "Sid": "AllowServicesToEncryptMessages",
            "Effect": "Allow",
            "Principal": {"Service": list(services)},
            "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
            "Resource": "*",
        })
    statements.extend(extra_statements)
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements})


def rotating_key(name: str, description: str, alias: str, opts: pulumi.ResourceOptions,
                 services: tuple[str, ...] = (),
                 deletion_window_days: int = 30,
                 extra_statements: Sequence[Any] = ()) -> tuple[aws.kms.Key, aws.kms.Alias]:
    """A customer managed key that rotates yearly, plus `alias/<alias>`. The key is protected: losing
    it loses everything it encrypts. `opts` (parent, provider) apply to both."""
    key = aws.kms.Key(
        name, description=description, enable_key_rotation=True,
        deletion_window_in_days=deletion_window_days,
        policy=key_policy_allowing_services(services, extra_statements),
        tags=STRATEGY_TAGS, opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=True)))
    key_alias = aws.kms.Alias(f"{name}-alias", name=f"alias/{alias}", target_key_id=key.key_id, opts=opts)
    return key, key_alias


def vault_lock(name: str, vault_name: pulumi.Input[str], lock: VaultLock,
               opts: pulumi.ResourceOptions) -> aws.backup.VaultLockConfiguration:
    """The vault's retention range. Without changeable_for_days AWS applies governance mode; with it,
    compliance mode that becomes immutable once the grace days pass."""
    return aws.backup.VaultLockConfiguration(
        name, backup_vault_name=vault_name,
        min_retention_days=lock.min_retention_days, max_retention_days=lock.max_retention_days,
        changeable_for_days=lock.changeable_for_days if lock.mode == "compliance" else None,
        opts=opts)


def vault_policy_document() -> pulumi.Output[str]:
    return pulumi.Output.json_dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyRecoveryPointDeletionAndPolicyChanges",
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": list(VAULT_DENIED_ACTIONS),
            "Resource": "*",
        }],
    })


class BackupVault(pulumi.ComponentResource):
    """A KMS-encrypted, locked AWS Backup vault with a deny-delete policy and failure alerts."""

    def __init__(self, name: str, args: BackupVaultArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Losing the key or the vault loses every recovery point: the engine refuses to delete them.
        kept = pulumi.ResourceOptions(parent=self, protect=True)

        self.key, self.key_alias = rotating_key(
            f"{name}-key", f"Encrypts AWS Backup vault {args.vault_name} and its alert topic",
            args.vault_name, child, services=("backup.amazonaws.com",),
            deletion_window_days=args.key_deletion_window_days)

        self.vault = aws.backup.Vault(
            f"{name}-vault", name=args.vault_name, kms_key_arn=self.key.arn, force_destroy=False,
            tags=STRATEGY_TAGS, opts=kept)

        self.lock = vault_lock(f"{name}-lock", self.vault.name, args.lock, kept)

        self.policy = aws.backup.VaultPolicy(
            f"{name}-policy", backup_vault_name=self.vault.name, policy=vault_policy_document(),
            opts=child)

        self.alerts_topic = aws.sns.Topic(
            f"{name}-alerts", name=f"{args.vault_name}-alerts", kms_master_key_id=self.key.arn,
            tags=STRATEGY_TAGS, opts=child)
        self.alerts_topic_policy = aws.sns.TopicPolicy(
            f"{name}-alerts-policy",
            arn=self.alerts_topic.arn,
            policy=pulumi.Output.json_dumps({
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "AllowAwsBackupToPublish",
                    "Effect": "Allow",
                    "Principal": {"Service": "backup.amazonaws.com"},
                    "Action": "SNS:Publish",
                    "Resource": self.alerts_topic.arn,
                }],
            }),
            opts=child)
        self.notifications = aws.backup.VaultNotifications(
            f"{name}-notifications",
            backup_vault_name=self.vault.name,
            sns_topic_arn=self.alerts_topic.arn,
            backup_vault_events=list(VAULT_EVENTS),
            # AWS checks the topic policy when notifications are set.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.alerts_topic_policy]))

        self.email_subscription: Optional[aws.sns.TopicSubscription] = None
        if args.alert_email:
            self.email_subscription = aws.sns.TopicSubscription(
                f"{name}-alerts-email",
                topic=self.alerts_topic.arn,
                protocol="email",
                endpoint=args.alert_email,
                filter_policy=pulumi.Output.json_dumps(ALERT_FILTER_POLICY),
                filter_policy_scope="MessageAttributes",
                opts=child)

        self.vault_name = self.vault.name
        self.vault_arn = self.vault.arn
        self.key_arn = self.key.arn
        self.topic_arn = self.alerts_topic.arn
        self.register_outputs({"vaultName": self.vault_name, "vaultArn": self.vault_arn,
                               "keyArn": self.key_arn, "topicArn": self.topic_arn})
