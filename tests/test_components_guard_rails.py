"""AccountGuardRails on the mock engine: no public snapshot sharing, a deny-only operator policy."""
import json

import botocore.session
import pytest

from components.guard_rails import AccountGuardRails, AccountGuardRailsArgs

# IAM names S3 actions differently from its API operations; these are the IAM names we rely on.
S3_IAM_ACTIONS = {"s3:DeleteBucket", "s3:DeleteBucketPolicy", "s3:PutBucketPolicy", "s3:PutBucketVersioning",
                  "s3:PutLifecycleConfiguration", "s3:PutBucketObjectLockConfiguration"}


def _statements(declared) -> dict[str, dict]:
    policy = declared.one("aws:iam/policy:Policy")
    return {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}


def _actions(statement) -> list[str]:
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]


def test_snapshot_sharing_is_blocked_account_wide(prod_stack):
    block = prod_stack.one("aws:ebs/snapshotBlockPublicAccess:SnapshotBlockPublicAccess")
    assert block.inputs["state"] == "block-all-sharing"


def test_snapshot_block_state_is_one_ec2_accepts(prod_stack):
    model = botocore.session.get_session().get_service_model("ec2")
    state = prod_stack.one("aws:ebs/snapshotBlockPublicAccess:SnapshotBlockPublicAccess").inputs["state"]
    assert state in model.shape_for("SnapshotBlockPublicAccessState").enum


def test_operator_policy_only_denies(prod_stack):
    assert {s["Effect"] for s in _statements(prod_stack).values()} == {"Deny"}


def test_deleting_or_unlocking_strategy_snapshots_is_denied_by_tag(prod_stack):
    statement = _statements(prod_stack)["DenyDestroyingStrategySnapshots"]
    assert {"ec2:DeleteSnapshot", "ec2:UnlockSnapshot"} <= set(_actions(statement))
    assert statement["Resource"] == "arn:aws:ec2:ap-south-1::snapshot/*"
    assert statement["Condition"] == {"StringEquals": {"aws:ResourceTag/Strategy": "quickport-backup"}}


def test_deregistering_strategy_images_is_denied_by_tag(prod_stack):
    statement = _statements(prod_stack)["DenyDestroyingStrategyImages"]
    assert "ec2:DeregisterImage" in _actions(statement)
    assert statement["Resource"] == "arn:aws:ec2:ap-south-1::image/*"
    assert statement["Condition"] == {"StringEquals": {"aws:ResourceTag/Strategy": "quickport-backup"}}


def test_overwriting_the_strategy_tag_is_denied(prod_stack):
    statement = _statements(prod_stack)["DenyRetaggingStrategyResources"]
    assert _actions(statement) == ["ec2:CreateTags"]
    assert statement["Condition"]["ForAnyValue:StringEquals"] == {"aws:TagKeys": ["Strategy"]}
    assert statement["Condition"]["StringEquals"] == {"aws:ResourceTag/Strategy": "quickport-backup"}


def test_vault_deletion_and_lock_removal_are_denied_on_the_vault(prod_stack):
    statement = _statements(prod_stack)["DenyWeakeningBackupVaults"]
    assert {"backup:DeleteBackupVault", "backup:DeleteBackupVaultLockConfiguration",
            "backup:DeleteBackupVaultAccessPolicy"} <= set(_actions(statement))
    assert statement["Resource"] == [prod_stack.one("aws:backup/vault:Vault").outputs["arn"]]


def test_recovery_point_deletion_is_denied(prod_stack):
    statement = _statements(prod_stack)["DenyDeletingRecoveryPoints"]
    assert set(_actions(statement)) == {"backup:DeleteRecoveryPoint", "backup:UpdateRecoveryPointLifecycle"}


def test_plan_deletion_is_denied_on_the_plan(prod_stack):
    statement = _statements(prod_stack)["DenyChangingBackupPlan"]
    assert "backup:DeleteBackupPlan" in _actions(statement)
    assert statement["Resource"] == prod_stack.one("aws:backup/plan:Plan").outputs["arn"]


def test_recycle_bin_rule_deletion_and_unlock_are_denied_on_both_rules(prod_stack):
    statement = _statements(prod_stack)["DenyWeakeningRecycleBin"]
    assert {"rbin:DeleteRule", "rbin:UnlockRule"} <= set(_actions(statement))
    rules = prod_stack.of_type("aws:rbin/rule:Rule")
    assert sorted(statement["Resource"]) == sorted(r.outputs["arn"] for r in rules)


def test_dump_and_trail_bucket_deletion_and_weakening_are_denied_on_the_buckets(prod_stack):
    statement = _statements(prod_stack)["DenyWeakeningDumpBucket"]
    assert {"s3:DeleteBucket", "s3:PutBucketObjectLockConfiguration"} <= set(_actions(statement))
    assert statement["Resource"] == ["arn:aws:s3:::quickport-prod-db-dumps-ap-south-1",
                                     "arn:aws:s3:::quickport-prod-db-dumps-ap-south-1-trail"]


def test_silencing_the_alarms_rules_trail_and_topics_is_denied_on_each(prod_stack):
    statements = _statements(prod_stack)
    for sid, type_ in (("DenySilencingAlarms", "aws:cloudwatch/metricAlarm:MetricAlarm"),
                       ("DenySilencingEventRules", "aws:cloudwatch/eventRule:EventRule"),
                       ("DenyStoppingTheTrail", "aws:cloudtrail/trail:Trail"),
                       ("DenyDeletingAlertTopics", "aws:sns/topic:Topic")):
        assert sorted(statements[sid]["Resource"]) == sorted(r.outputs["arn"] for r in prod_stack.of_type(type_)), sid
    assert {"cloudtrail:StopLogging", "cloudtrail:DeleteTrail"} <= set(_actions(statements["DenyStoppingTheTrail"]))
    assert {"cloudwatch:DeleteAlarms", "cloudwatch:DisableAlarmActions"} <= set(
        _actions(statements["DenySilencingAlarms"]))


def test_turning_ebs_encryption_by_default_off_is_denied(prod_stack):
    statement = _statements(prod_stack)["DenyWeakeningEbsEncryption"]
    assert set(_actions(statement)) == {"ec2:DisableEbsEncryptionByDefault", "ec2:ModifyEbsDefaultKmsKeyId",
                                        "ec2:ResetEbsDefaultKmsKeyId"}


def test_ebs_encryption_by_default_is_on_with_the_aws_managed_key(prod_stack):
    assert prod_stack.one("aws:ebs/encryptionByDefault:EncryptionByDefault").inputs["enabled"] is True
    assert prod_stack.of_type("aws:ebs/defaultKmsKey:DefaultKmsKey") == []


def test_stack_key_becomes_the_default_ebs_key_and_is_guarded(stack_with):
    declared = stack_with({"quickport-backup:ebsEncryption": {"defaultKmsKey": "stack"}})
    key = declared.one("aws:kms/key:Key", "quickport-prod-guard-rails-ebs-key")
    assert key.protect and key.inputs["enableKeyRotation"] is True
    assert declared.one("aws:ebs/defaultKmsKey:DefaultKmsKey").inputs["keyArn"] == key.outputs["arn"]
    assert key.outputs["arn"] in _statements(declared)["DenyDestroyingBackupKeys"]["Resource"]


def test_an_existing_key_arn_becomes_the_default_ebs_key(stack_with):
    arn = "arn:aws:kms:ap-south-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    declared = stack_with({"quickport-backup:ebsEncryption": {"defaultKmsKey": arn}})
    assert declared.one("aws:ebs/defaultKmsKey:DefaultKmsKey").inputs["keyArn"] == arn


def test_key_deletion_is_denied_on_every_key_of_the_stack(prod_stack):
    statement = _statements(prod_stack)["DenyDestroyingBackupKeys"]
    assert {"kms:ScheduleKeyDeletion", "kms:DisableKey"} <= set(_actions(statement))
    keys = prod_stack.of_type("aws:kms/key:Key")
    assert sorted(statement["Resource"]) == sorted(k.outputs["arn"] for k in keys)


def test_copy_vault_and_its_key_are_guarded_too(stack_with, prod_config):
    declared = stack_with({"quickport-backup:backup": {**prod_config["quickport-backup:backup"],
                                                       "copyToRegion": "ap-southeast-1"}})
    statements = _statements(declared)
    assert len(statements["DenyWeakeningBackupVaults"]["Resource"]) == 2
    copy_key = declared.one("aws:kms/key:Key", "quickport-prod-daily-copy-key")
    assert copy_key.outputs["arn"] in statements["DenyDestroyingBackupKeys"]["Resource"]


@pytest.mark.parametrize("service", ["ec2", "backup", "rbin", "kms", "cloudwatch", "events", "cloudtrail", "sns"])
def test_denied_actions_are_real_api_operations(prod_stack, service):
    operations = set(botocore.session.get_session().get_service_model(service).operation_names)
    actions = {a for s in _statements(prod_stack).values() for a in _actions(s) if a.startswith(service + ":")}
    assert actions and {a.split(":", 1)[1] for a in actions} <= operations


def test_s3_actions_are_the_expected_iam_names(prod_stack):
    actions = {a for s in _statements(prod_stack).values() for a in _actions(s) if a.startswith("s3:")}
    assert actions == S3_IAM_ACTIONS


def test_policy_is_attached_to_each_configured_group_role_and_user(run_component):
    declared = run_component(lambda: AccountGuardRails("g", AccountGuardRailsArgs(
        region="ap-south-1", operator_group_names=("ops", "oncall"), operator_role_names=("break-fix",),
        operator_user_names=("asha",))))
    policy_arn = declared.one("aws:iam/policy:Policy").outputs["arn"]
    groups = declared.of_type("aws:iam/groupPolicyAttachment:GroupPolicyAttachment")
    assert sorted(g.inputs["group"] for g in groups) == ["oncall", "ops"]
    [role] = declared.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    [user] = declared.of_type("aws:iam/userPolicyAttachment:UserPolicyAttachment")
    assert (role.inputs["role"], user.inputs["user"]) == ("break-fix", "asha")
    assert {a.inputs["policyArn"] for a in [*groups, role, user]} == {policy_arn}
    # Never the exclusive attachment, which would detach the policy from everyone else.
    assert declared.of_type("aws:iam/policyAttachment:PolicyAttachment") == []


def test_shipped_stack_attaches_the_policy_to_the_placeholder_operator_group(prod_stack):
    [attachment] = prod_stack.of_type("aws:iam/groupPolicyAttachment:GroupPolicyAttachment")
    assert attachment.inputs["group"] == "quickport-operators"
    assert attachment.inputs["policyArn"] == prod_stack.one("aws:iam/policy:Policy").outputs["arn"]


def test_guard_rail_config_attaches_roles_and_users_too(stack_with):
    declared = stack_with({"quickport-backup:guardRails": {"operatorRoles": ["ops-admin"], "operatorUsers": ["asha"]}})
    assert declared.of_type("aws:iam/groupPolicyAttachment:GroupPolicyAttachment") == []
    assert [r.inputs["role"] for r in declared.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
            if r.name.startswith("quickport-prod-guard-rails")] == ["ops-admin"]
    assert [u.inputs["user"] for u in declared.of_type("aws:iam/userPolicyAttachment:UserPolicyAttachment")] == ["asha"]


def test_guard_rail_children_are_parented_to_the_component(prod_stack):
    component = prod_stack.one("quickport:backup:AccountGuardRails")
    assert {r.type for r in prod_stack.children_of(component)} == {
        "aws:ebs/snapshotBlockPublicAccess:SnapshotBlockPublicAccess", "aws:iam/policy:Policy",
        "aws:ebs/encryptionByDefault:EncryptionByDefault", "aws:iam/groupPolicyAttachment:GroupPolicyAttachment"}
