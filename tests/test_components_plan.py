"""DailySnapshotPlan on the mock engine: role, one rule, selection by ARN, restore test, copy."""
import json
import re

import botocore.session

BACKUP_NS = "quickport-backup:backup"
INSTANCE_ARN = "arn:aws:ec2:ap-south-1:123456789012:instance/i-0a1b2c3d4e5f67890"


def _with_backup(stack_with, prod_config, **changes):
    backup = {**prod_config[BACKUP_NS], **changes}
    return stack_with({BACKUP_NS: {k: v for k, v in backup.items() if v is not None}})


def _rule(declared):
    [rule] = declared.one("aws:backup/plan:Plan").inputs["rules"]
    return rule


def test_service_role_is_assumable_only_by_aws_backup(prod_stack):
    role = prod_stack.one("aws:iam/role:Role")
    [statement] = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement == {"Effect": "Allow", "Principal": {"Service": "backup.amazonaws.com"},
                         "Action": "sts:AssumeRole"}


def test_service_role_has_exactly_the_two_aws_backup_managed_policies(prod_stack):
    role = prod_stack.one("aws:iam/role:Role")
    attachments = prod_stack.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert {a.inputs["role"] for a in attachments} == {role.outputs["name"]}
    assert sorted(a.inputs["policyArn"] for a in attachments) == [
        "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup",
        "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForRestores",
    ]


def test_plan_has_one_rule_on_the_configured_schedule_into_the_vault(prod_stack):
    plan = prod_stack.one("aws:backup/plan:Plan")
    assert plan.inputs["name"] == "quickport-prod-daily"
    assert len(plan.inputs["rules"]) == 1
    rule = _rule(prod_stack)
    assert rule["ruleName"] == "daily"
    assert rule["schedule"] == "cron(0 20 * * ? *)"
    assert rule["targetVaultName"] == "quickport-prod-vault"


def test_rule_deletes_recovery_points_after_the_configured_retention(stack_with, prod_config):
    declared = _with_backup(stack_with, prod_config, retentionDays=14)
    assert _rule(declared)["lifecycle"] == {"deleteAfter": 14}


def test_rule_tags_recovery_points_for_the_operator_guard_rails(prod_stack):
    assert _rule(prod_stack)["recoveryPointTags"] == {"Strategy": "quickport-backup"}


def test_rule_windows_are_within_what_aws_backup_accepts(prod_stack):
    rule = _rule(prod_stack)
    # AWS: start window at least 60 minutes; completion at least 60 minutes after the start window.
    assert rule["startWindow"] >= 60
    assert rule["completionWindow"] >= rule["startWindow"] + 60


def test_no_copy_action_without_copy_to_region(prod_stack):
    assert "copyActions" not in _rule(prod_stack)
    assert prod_stack.of_type("pulumi:providers:aws") == []
    assert len(prod_stack.of_type("aws:backup/vault:Vault")) == 1


def test_copy_to_region_copies_into_a_locked_vault_in_that_region(stack_with, prod_config):
    declared = _with_backup(stack_with, prod_config, copyToRegion="ap-southeast-1")
    provider = declared.one("pulumi:providers:aws")
    assert provider.inputs["region"] == "ap-southeast-1"
    copy_vault = declared.one("aws:backup/vault:Vault", "quickport-prod-daily-copy-vault")
    [copy_action] = _rule(declared)["copyActions"]
    assert copy_action["destinationVaultArn"] == copy_vault.outputs["arn"]
    assert copy_action["lifecycle"] == {"deleteAfter": 7}
    copy_lock = declared.one("aws:backup/vaultLockConfiguration:VaultLockConfiguration",
                             "quickport-prod-daily-copy-vault-lock")
    assert (copy_lock.inputs["minRetentionDays"], copy_lock.inputs["maxRetentionDays"]) == (7, 35)


def test_copy_vault_and_its_key_live_in_the_copy_region_and_are_protected(stack_with, prod_config):
    declared = _with_backup(stack_with, prod_config, copyToRegion="ap-southeast-1")
    provider = declared.one("pulumi:providers:aws")
    key = declared.one("aws:kms/key:Key", "quickport-prod-daily-copy-key")
    vault = declared.one("aws:backup/vault:Vault", "quickport-prod-daily-copy-vault")
    for resource in (key, vault):
        assert resource.provider.startswith(provider.urn + "::"), resource.name
        assert resource.protect, resource.name
    assert key.inputs["enableKeyRotation"] is True
    assert vault.inputs["kmsKeyArn"] == key.outputs["arn"]
    # The mock engine shapes ARNs in the provider's region, as AWS would.
    assert vault.outputs["arn"].startswith("arn:aws:backup:ap-southeast-1:")
    assert key.outputs["arn"].startswith("arn:aws:kms:ap-southeast-1:")


def test_copy_vault_denies_recovery_point_deletion_like_the_main_vault(stack_with, prod_config):
    declared = _with_backup(stack_with, prod_config, copyToRegion="ap-southeast-1")
    provider = declared.one("pulumi:providers:aws")
    copy_policy = declared.one("aws:backup/vaultPolicy:VaultPolicy", "quickport-prod-daily-copy-vault-policy")
    main_policy = declared.one("aws:backup/vaultPolicy:VaultPolicy", "quickport-prod-vault-policy")
    assert copy_policy.inputs["backupVaultName"] == "quickport-prod-daily-copy"
    assert copy_policy.provider.startswith(provider.urn + "::")
    assert json.loads(copy_policy.inputs["policy"]) == json.loads(main_policy.inputs["policy"])


def _with_air_gap(stack_with, prod_config, **vault):
    return stack_with({BACKUP_NS: {**prod_config[BACKUP_NS], "airGappedVault": vault or {
        "minRetentionDays": 7, "maxRetentionDays": 35}}, "quickport-backup:ebsEncryption": {"defaultKmsKey": "stack"}})


def test_air_gapped_vault_gets_every_daily_recovery_point_copied_in(stack_with, prod_config):
    declared = _with_air_gap(stack_with, prod_config)
    vault = declared.one("aws:backup/logicallyAirGappedVault:LogicallyAirGappedVault")
    assert vault.inputs["name"] == "quickport-prod-daily-air-gapped"
    assert (vault.inputs["minRetentionDays"], vault.inputs["maxRetentionDays"]) == (7, 35)
    assert vault.protect
    assert "encryptionKeyArn" not in vault.inputs       # AWS-owned key: AWS's recommendation
    [copy_action] = _rule(declared)["copyActions"]
    assert copy_action == {"destinationVaultArn": vault.outputs["arn"], "lifecycle": {"deleteAfter": 7}}
    # Same account and region as the main vault (no provider of its own).
    assert vault.outputs["arn"].startswith("arn:aws:backup:ap-south-1:123456789012:backup-vault:")


def test_air_gapped_and_cross_region_copies_together(stack_with, prod_config):
    backup = {**prod_config[BACKUP_NS], "copyToRegion": "ap-southeast-1",
              "airGappedVault": {"minRetentionDays": 7, "maxRetentionDays": 35}}
    declared = stack_with({BACKUP_NS: backup, "quickport-backup:ebsEncryption": {"defaultKmsKey": "stack"}})
    destinations = [c["destinationVaultArn"] for c in _rule(declared)["copyActions"]]
    assert destinations == [declared.one("aws:backup/vault:Vault", "quickport-prod-daily-copy-vault").outputs["arn"],
                            declared.one("aws:backup/logicallyAirGappedVault:LogicallyAirGappedVault").outputs["arn"]]


def test_air_gapped_vault_is_exported_and_guarded(stack_with, prod_config):
    declared = _with_air_gap(stack_with, prod_config)
    vault = declared.one("aws:backup/logicallyAirGappedVault:LogicallyAirGappedVault")
    policy = json.loads(declared.one("aws:iam/policy:Policy").inputs["policy"])
    [vaults] = [s for s in policy["Statement"] if s["Sid"] == "DenyWeakeningBackupVaults"]
    assert vault.outputs["arn"] in vaults["Resource"]


def test_selection_selects_the_instance_by_arn_only(prod_stack):
    selection = prod_stack.one("aws:backup/selection:Selection")
    assert selection.inputs["resources"] == [INSTANCE_ARN]
    for widening in ("selectionTags", "conditions", "notResources"):
        assert widening not in selection.inputs, widening


def test_names_fit_aws_backup_limits_for_the_longest_plan_name(stack_with, prod_config):
    declared = _with_backup(stack_with, prod_config, planName="p" * 50)
    name_re = r"^[a-zA-Z0-9\-\_\.]{1,50}$"  # BackupRuleName / BackupSelectionName in the Backup API docs
    assert re.match(name_re, _rule(declared)["ruleName"])
    assert re.match(name_re, declared.one("aws:backup/selection:Selection").inputs["name"])
    assert len(declared.one("aws:iam/role:Role").inputs["name"]) <= 64


def test_selection_uses_the_plan_and_the_service_role(prod_stack):
    selection = prod_stack.one("aws:backup/selection:Selection")
    assert selection.inputs["planId"] == prod_stack.one("aws:backup/plan:Plan").id
    assert selection.inputs["iamRoleArn"] == prod_stack.one("aws:iam/role:Role").outputs["arn"]


def test_restore_testing_plan_restores_the_latest_snapshot_from_the_vault(prod_stack):
    plan = prod_stack.one("aws:backup/restoreTestingPlan:RestoreTestingPlan")
    vault = prod_stack.one("aws:backup/vault:Vault")
    selection = plan.inputs["recoveryPointSelection"]
    assert selection["algorithm"] == "LATEST_WITHIN_WINDOW"
    assert selection["includeVaults"] == [vault.outputs["arn"]]
    assert selection["recoveryPointTypes"] == ["SNAPSHOT"]
    assert plan.inputs["scheduleExpression"].startswith("cron(")


def test_restore_testing_selection_targets_the_instance_as_ec2(prod_stack):
    selection = prod_stack.one("aws:backup/restoreTestingSelection:RestoreTestingSelection")
    assert selection.inputs["protectedResourceType"] == "EC2"
    assert selection.inputs["protectedResourceArns"] == [INSTANCE_ARN]
    assert selection.inputs["iamRoleArn"] == prod_stack.one("aws:iam/role:Role").outputs["arn"]
    plan = prod_stack.one("aws:backup/restoreTestingPlan:RestoreTestingPlan")
    assert selection.inputs["restoreTestingPlanName"] == plan.outputs["name"]


def test_restore_testing_names_use_only_letters_digits_and_underscores(prod_stack):
    for type_ in ("aws:backup/restoreTestingPlan:RestoreTestingPlan",
                  "aws:backup/restoreTestingSelection:RestoreTestingSelection"):
        name = prod_stack.one(type_).inputs["name"]
        assert name.replace("_", "").isalnum() and len(name) <= 50, name


def test_restore_testing_fields_exist_in_the_backup_api(prod_stack):
    model = botocore.session.get_session().get_service_model("backup")
    algorithms = model.shape_for("RestoreTestingRecoveryPointSelectionAlgorithm").enum
    types = model.shape_for("RestoreTestingRecoveryPointType").enum
    selection = prod_stack.one("aws:backup/restoreTestingPlan:RestoreTestingPlan").inputs["recoveryPointSelection"]
    assert selection["algorithm"] in algorithms
    assert set(selection["recoveryPointTypes"]) <= set(types)


def test_every_plan_child_is_parented_to_the_component(prod_stack):
    component = prod_stack.one("quickport:backup:DailySnapshotPlan")
    children = {r.type for r in prod_stack.children_of(component)}
    assert children == {"aws:iam/role:Role", "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                        "aws:backup/plan:Plan", "aws:backup/selection:Selection",
                        "aws:backup/restoreTestingPlan:RestoreTestingPlan",
                        "aws:backup/restoreTestingSelection:RestoreTestingSelection"}


def test_restore_test_can_be_isolated_with_metadata_overrides(run_component):
    from components.backup_plan import DailySnapshotPlan, DailySnapshotPlanArgs
    overrides = {"securityGroupIds": '["sg-0123456789abcdef0"]', "subnetId": "subnet-0123456789abcdef0"}
    declared = run_component(lambda: DailySnapshotPlan("p", DailySnapshotPlanArgs(
        plan_name="p", vault_name="v", vault_arn="arn:aws:backup:ap-south-1:123456789012:backup-vault:v",
        instance_id="i-0a1b2c3d4e5f67890", region="ap-south-1", restore_test_metadata_overrides=overrides)))
    selection = declared.one("aws:backup/restoreTestingSelection:RestoreTestingSelection")
    assert selection.inputs["restoreMetadataOverrides"] == overrides


def test_shipped_restore_test_uses_inferred_metadata(prod_stack):
    selection = prod_stack.one("aws:backup/restoreTestingSelection:RestoreTestingSelection")
    assert "restoreMetadataOverrides" not in selection.inputs
