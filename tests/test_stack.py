"""The whole program on the mock engine, as `pulumi preview` and `backupctl preview` run it."""
import json
import runpy

import pulumi
import pytest

from components.config import REPO_ROOT, load_stack_config
from components.stack import declare_stack
from scripts.offline.engine import run_program

COMPONENTS = ["quickport:backup:AccountGuardRails", "quickport:backup:BackupMonitoring", "quickport:backup:BackupVault",
              "quickport:backup:BaselineSnapshots", "quickport:backup:BinlogShipperDocument",
              "quickport:backup:DailySnapshotPlan",
              "quickport:backup:DumpBucket", "quickport:backup:DumpDocument", "quickport:backup:RecycleBin"]
# Losing any of these loses backups: the engine must refuse to delete them.
MUST_BE_PROTECTED = ["aws:backup/vault:Vault", "aws:backup/vaultLockConfiguration:VaultLockConfiguration",
                     "aws:kms/key:Key", "aws:rbin/rule:Rule", "aws:ebs/snapshot:Snapshot",
                     "pulumi-python:dynamic/quickport:EbsSnapshotLock", "aws:s3/bucket:Bucket"]


EXPORTS = ["instanceId", "vaultName", "vaultArn", "vaultKeyArn", "alertsTopicArn", "backupPlanId",
           "backupPlanArn", "backupRoleArn", "restoreTestingPlanName", "recycleBinSnapshotRuleId",
           "recycleBinImageRuleId", "baselineSnapshotIds", "dumpBucketName", "dumpKeyArn", "dumpDocumentName",
           "dumpAssociationId", "operatorPolicyArn", "monitoringTopicArn", "trailArn"]


@pytest.fixture(scope="module")
def exports() -> dict:
    """The stack outputs `pulumi up` would show, resolved on the mock engine."""
    cfg = load_stack_config("prod")
    captured: dict = {}

    def program():
        declare_stack(cfg)
        outputs = pulumi.runtime.settings.get_root_resource().outputs
        for name, value in outputs.items():
            # Per key: in preview an unknown value (e.g. an id AWS assigns) would hide all the others.
            pulumi.Output.from_input(value).apply(lambda v, name=name: captured.__setitem__(name, v))
    # Module scope: one program run serves every export test.
    run_program(program, {"aws:region": "ap-south-1"})
    return captured


def test_stack_declares_each_component_once(prod_stack):
    assert sorted(r.type for r in prod_stack if not r.custom) == COMPONENTS


def test_every_resource_belongs_to_a_component(prod_stack):
    components = {r.urn for r in prod_stack if not r.custom}
    for resource in prod_stack:
        if resource.custom and resource.type != "pulumi:providers:aws":
            assert resource.parent in components, resource.name


def test_components_use_the_quickport_backup_type_token(prod_stack):
    assert all(r.type.startswith("quickport:backup:") for r in prod_stack if not r.custom)


@pytest.mark.parametrize("type_", MUST_BE_PROTECTED)
def test_resources_holding_backups_are_protected(prod_stack, type_):
    resources = prod_stack.of_type(type_)
    assert resources and all(r.protect for r in resources), type_


def test_resource_names_are_unique(prod_stack):
    names = [(r.type, r.name) for r in prod_stack]
    assert len(names) == len(set(names))


def test_exports_name_the_ids_an_operator_needs(exports):
    assert exports["vaultName"] == "quickport-prod-vault"
    assert exports["dumpBucketName"] == "quickport-prod-db-dumps-ap-south-1"
    assert exports["instanceId"] == "i-0a1b2c3d4e5f67890"
    assert exports["baselineSnapshotIds"] == {
        "prod-root-2026-11-20-before-php-upgrade":
            "quickport-prod-baselines-prod-root-2026-11-20-before-php-upgrade-id"}
    for key in ("vaultArn", "backupPlanId", "recycleBinSnapshotRuleId", "recycleBinImageRuleId",
                "dumpDocumentName", "alertsTopicArn", "operatorPolicyArn", "restoreTestingPlanName"):
        assert exports[key], key


def test_every_export_resolves_except_ids_aws_assigns(exports):
    # dumpAssociationId only exists after `pulumi up`; the mock engine leaves it unknown.
    assert set(EXPORTS) - set(exports) == {"dumpAssociationId"}


def test_no_copy_vault_export_without_copy_region(exports):
    assert "copyVaultArn" not in exports


def test_backupctl_preview_json_lists_the_resources_with_protect_flags(prod_stack, backupctl):
    result = backupctl.launch("preview", "--json", cwd=REPO_ROOT)
    assert result.code == 0, result.err
    listed = {(r["type"], r["name"]): r for r in result.json()["resources"]}
    assert len(listed) == len(prod_stack)
    for resource in prod_stack:
        row = listed[(resource.type, resource.name)]
        assert (row["protect"], row["retainOnDelete"]) == (resource.protect, resource.retain_on_delete)
    assert listed[("aws:backup/vault:Vault", "quickport-prod-vault-vault")]["protect"] is True
    snapshot = listed[("aws:ebs/snapshot:Snapshot",
                       "quickport-prod-baselines-prod-root-2026-11-20-before-php-upgrade")]
    assert snapshot["protect"] is True and snapshot["retainOnDelete"] is True


def test_misspelt_namespace_key_stops_the_program_instead_of_falling_back_to_defaults(stack_with):
    with pytest.raises(pulumi.RunError, match=r"^quickport-backup:bakup: unknown key; allowed keys are "
                                              r"instanceId, rootVolumeId, "):
        stack_with({"quickport-backup:bakup": {"retentionDays": 14}})


def test_misspelt_key_in_the_clis_pulumi_config_is_rejected(prod_config, monkeypatch):
    # The Pulumi CLI hands a Python program its stack config in PULUMI_CONFIG, not through the mocks.
    from scripts.offline.engine import pulumi_config_values
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(pulumi_config_values(
        {**prod_config, "quickport-backup:dbPasword": "hunter2"})))
    with pytest.raises(pulumi.RunError, match=r"^quickport-backup:dbPasword: unknown key") as raised:
        run_program(lambda: runpy.run_path(str(REPO_ROOT / "__main__.py"), run_name="__main__"), {})
    assert "hunter2" not in str(raised.value)  # the engine hands secrets over decrypted
