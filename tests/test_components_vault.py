"""BackupVault on the mock engine: encryption, lock, deny-delete policy, failure alerts."""
import json

from components.backup_vault import BackupVault, BackupVaultArgs
from components.config import VaultLock

VAULT_NS = "quickport-backup:backup"



def _vault_topic(declared):
    return declared.one("aws:sns/topic:Topic", "quickport-prod-vault-alerts")


def _vault_topic_policy(declared):
    return declared.one("aws:sns/topicPolicy:TopicPolicy", "quickport-prod-vault-alerts-policy")

def _vault(declared):
    return declared.one("aws:backup/vault:Vault")


def _statements(resource) -> list[dict]:
    return json.loads(resource.inputs["policy"])["Statement"]


def _with_backup(stack_with, prod_config, **changes):
    backup = {**prod_config[VAULT_NS], **changes}
    return stack_with({VAULT_NS: {k: v for k, v in backup.items() if v is not None}})


def test_vault_is_named_from_config_and_never_force_destroyed(prod_stack):
    vault = _vault(prod_stack)
    assert vault.inputs["name"] == "quickport-prod-vault"
    assert vault.inputs["forceDestroy"] is False


def test_vault_is_encrypted_with_the_components_rotating_customer_managed_key(prod_stack):
    key = prod_stack.one("aws:kms/key:Key", "quickport-prod-vault-key")
    assert key.inputs["enableKeyRotation"] is True
    assert _vault(prod_stack).inputs["kmsKeyArn"] == key.outputs["arn"]


def test_vault_key_has_an_alias_named_after_the_vault(prod_stack):
    alias = prod_stack.one("aws:kms/alias:Alias", "quickport-prod-vault-key-alias")
    assert alias.inputs["name"] == "alias/quickport-prod-vault"


def test_vault_key_policy_keeps_iam_in_charge_and_lets_aws_backup_encrypt_alerts(prod_stack):
    key = prod_stack.one("aws:kms/key:Key", "quickport-prod-vault-key")
    root, service = _statements(key)
    assert root["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    assert root["Action"] == "kms:*"
    assert service["Principal"] == {"Service": ["backup.amazonaws.com"]}
    assert sorted(service["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]


def test_vault_key_vault_and_lock_are_protected(prod_stack):
    for type_, name in (("aws:kms/key:Key", "quickport-prod-vault-key"),
                        ("aws:backup/vault:Vault", None),
                        ("aws:backup/vaultLockConfiguration:VaultLockConfiguration", None)):
        assert prod_stack.one(type_, name).protect, type_


def test_governance_lock_sets_the_retention_range_without_a_grace_period(prod_stack):
    lock = prod_stack.one("aws:backup/vaultLockConfiguration:VaultLockConfiguration")
    assert lock.inputs["backupVaultName"] == "quickport-prod-vault"
    assert (lock.inputs["minRetentionDays"], lock.inputs["maxRetentionDays"]) == (7, 35)
    assert "changeableForDays" not in lock.inputs


def test_compliance_lock_gets_its_grace_days(stack_with, prod_config):
    declared = _with_backup(stack_with, prod_config, vaultLock={
        "mode": "compliance", "minRetentionDays": 7, "maxRetentionDays": 30, "changeableForDays": 5})
    lock = declared.one("aws:backup/vaultLockConfiguration:VaultLockConfiguration")
    assert (lock.inputs["minRetentionDays"], lock.inputs["maxRetentionDays"]) == (7, 30)
    assert lock.inputs["changeableForDays"] == 5


def test_vault_policy_denies_recovery_point_deletion_to_everyone(prod_stack):
    policy = prod_stack.one("aws:backup/vaultPolicy:VaultPolicy")
    assert policy.inputs["backupVaultName"] == "quickport-prod-vault"
    [statement] = _statements(policy)
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == {"AWS": "*"}
    assert statement["Resource"] == "*"
    assert sorted(statement["Action"]) == ["backup:DeleteRecoveryPoint", "backup:PutBackupVaultAccessPolicy",
                                           "backup:UpdateRecoveryPointLifecycle"]
    assert "Condition" not in statement


def test_alert_topic_is_encrypted_with_the_vault_key(prod_stack):
    topic = _vault_topic(prod_stack)
    key = prod_stack.one("aws:kms/key:Key", "quickport-prod-vault-key")
    assert topic.inputs["kmsMasterKeyId"] == key.outputs["arn"]


def test_topic_policy_lets_only_aws_backup_publish(prod_stack):
    topic = _vault_topic(prod_stack)
    policy = _vault_topic_policy(prod_stack)
    assert policy.inputs["arn"] == topic.outputs["arn"]
    [statement] = _statements(policy)
    assert statement == {"Sid": "AllowAwsBackupToPublish", "Effect": "Allow",
                         "Principal": {"Service": "backup.amazonaws.com"}, "Action": "SNS:Publish",
                         "Resource": topic.outputs["arn"]}


def test_vault_notifies_the_topic_of_backup_copy_and_restore_outcomes(prod_stack):
    notifications = prod_stack.one("aws:backup/vaultNotifications:VaultNotifications")
    assert notifications.inputs["snsTopicArn"] == _vault_topic(prod_stack).outputs["arn"]
    assert sorted(notifications.inputs["backupVaultEvents"]) == [
        "BACKUP_JOB_COMPLETED", "COPY_JOB_FAILED", "RESTORE_JOB_COMPLETED"]


def test_vault_notification_events_are_ones_the_backup_api_accepts(prod_stack):
    import botocore.session
    model = botocore.session.get_session().get_service_model("backup")
    allowed = set(model.shape_for("BackupVaultEvent").enum)
    events = prod_stack.one("aws:backup/vaultNotifications:VaultNotifications").inputs["backupVaultEvents"]
    assert set(events) <= allowed


def test_notifications_wait_for_the_topic_policy(prod_stack):
    notifications = prod_stack.one("aws:backup/vaultNotifications:VaultNotifications")
    assert _vault_topic_policy(prod_stack).urn in notifications.dependencies


def test_email_subscription_receives_only_jobs_that_did_not_complete(prod_stack):
    subscription = prod_stack.one("aws:sns/topicSubscription:TopicSubscription", "quickport-prod-vault-alerts-email")
    assert subscription.inputs["protocol"] == "email"
    assert subscription.inputs["endpoint"] == "ops@quickport.example"
    assert subscription.inputs["topic"] == _vault_topic(prod_stack).outputs["arn"]
    assert subscription.inputs["filterPolicyScope"] == "MessageAttributes"
    assert json.loads(subscription.inputs["filterPolicy"]) == {"State": [{"anything-but": "COMPLETED"}]}


def test_no_email_subscription_without_alert_email(stack_with, prod_config):
    declared = _with_backup(stack_with, prod_config, alertEmail=None)
    assert declared.of_type("aws:sns/topicSubscription:TopicSubscription") == []
    # sorted: the mock engine registers resources of separate components in no fixed order
    assert sorted(t.name for t in declared.of_type("aws:sns/topic:Topic")) == ["quickport-prod-monitoring-topic",
                                                                               "quickport-prod-vault-alerts"]


def test_every_vault_child_is_parented_to_the_component(prod_stack):
    component = prod_stack.one("quickport:backup:BackupVault")
    children = prod_stack.children_of(component)
    assert len(children) == 9
    assert all(c.type.startswith(("aws:kms", "aws:backup", "aws:sns")) for c in children)


def test_two_vault_components_do_not_clash(run_component):
    def program():
        BackupVault("a", BackupVaultArgs("vault-a", lock=VaultLock()))
        BackupVault("b", BackupVaultArgs("vault-b", lock=VaultLock()))
    declared = run_component(program)
    names = [r.name for r in declared if r.custom]
    assert len(names) == len(set(names)) == 16
