"""End to end: `backupctl preview` runs the real program on the mock engine, then the real pack.

Variants of Pulumi.prod.yaml go through --config-file; variants only a code change could make (an
unprotected bucket, a vault without its lock) go through the same report path with a changed copy
of the shipped stack's resources.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from scripts import cli
from scripts.commands import preview
from scripts.commands.base import Context
from scripts.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from scripts.offline.policy_gate import PolicyGate, PolicyPackError
from tests.fixtures.policy_pack import Resources, violations_of

ROOT = Path(__file__).resolve().parent.parent

NS = "quickport-backup"


def write_stack(tmp_path: Path, prod_config: dict, **changes) -> Path:
    """A copy of Pulumi.prod.yaml with `changes` merged into quickport-backup:<key> objects."""
    config = copy.deepcopy(prod_config)
    for key, value in changes.items():
        current = config.get(f"{NS}:{key}")
        config[f"{NS}:{key}"] = {**current, **value} if isinstance(current, dict) else value
    path = tmp_path / "Pulumi.variant.yaml"
    path.write_text(yaml.safe_dump({"config": config}))
    return path


def run_cli(backupctl, *argv: str) -> tuple[int, str, str]:
    result = backupctl("preview", *argv)
    return result.code, result.out, result.err


def report(capsys, prod_config, resources, *argv: str) -> tuple[int, str]:
    """The preview's report path (gate, output, exit code) for a given resource list."""
    args = cli.build_parser().parse_args(["preview", *argv])
    code = preview.report_preview(Context(args=args, command="preview"), prod_config, list(resources))
    return code, capsys.readouterr().out


@pytest.fixture(scope="module")
def shipped(prod_stack) -> Resources:
    return Resources(prod_stack)


# --- the shipped stack -----------------------------------------------------------------------------

def test_shipped_prod_stack_passes_every_policy(backupctl):
    code, out, _ = run_cli(backupctl)
    assert code == EXIT_OK
    assert "quickport-backup-policies@v0.1.0: no violations" in out


def test_json_output_lists_no_violations_for_shipped_stack(backupctl):
    code, out, _ = run_cli(backupctl, "--json")
    document = json.loads(out)
    assert code == EXIT_OK and document["violations"] == []
    assert document["policyPack"] == {"name": "quickport-backup-policies", "version": "0.1.0"}


# --- config variants -------------------------------------------------------------------------------

def test_three_day_backup_retention_fails_the_gate(backupctl, tmp_path, prod_config):
    stack = write_stack(tmp_path, prod_config, backup={
        "retentionDays": 3, "vaultLock": {"mode": "governance", "minRetentionDays": 3, "maxRetentionDays": 35}})
    code, out, _ = run_cli(backupctl, "--config-file", str(stack))
    assert code == EXIT_FAILED
    assert "[mandatory]  backup-retention-minimum" in out
    assert "keeps recovery points 3 days; the strategy requires at least 7" in out
    assert "[mandatory]  backup-vault-locked" in out


def test_one_day_recycle_bin_fails_the_gate(backupctl, tmp_path, prod_config):
    stack = write_stack(tmp_path, prod_config, recycleBin={"retentionDays": 1})
    code, out, _ = run_cli(backupctl, "--config-file", str(stack), "--json")
    assert code == EXIT_FAILED
    [violation] = json.loads(out)["violations"]
    assert violation["policy"] == "recycle-bin-retention-minimum" and violation["level"] == "mandatory"
    assert "keeps deleted snapshots 1 days" in violation["message"]
    assert violation["urn"].endswith("::quickport-prod-recycle-bin-ebs-snapshot")


def test_unlocked_recycle_bin_fails_the_gate(backupctl, tmp_path, prod_config):
    stack = write_stack(tmp_path, prod_config, recycleBin={"lock": False})
    code, out, _ = run_cli(backupctl, "--config-file", str(stack))
    assert code == EXIT_FAILED and "is not locked" in out


def test_no_policies_skips_the_gate(backupctl, tmp_path, prod_config):
    stack = write_stack(tmp_path, prod_config, recycleBin={"retentionDays": 1})
    code, out, _ = run_cli(backupctl, "--config-file", str(stack), "--no-policies", "--json")
    assert code == EXIT_OK and "violations" not in json.loads(out)


def test_policy_config_file_raises_a_threshold_for_the_gate(backupctl, tmp_path):
    config = tmp_path / "policy-config.json"
    config.write_text(json.dumps({"dump-retention-minimum": {"minRetentionDays": 60}}))
    code, out, _ = run_cli(backupctl, "--policy-config", str(config))
    assert code == EXIT_FAILED
    assert "deletes dumps after 30 days; the strategy requires at least 60" in out


def test_policy_config_file_can_make_a_policy_advisory(backupctl, tmp_path, prod_config):
    stack = write_stack(tmp_path, prod_config, recycleBin={"retentionDays": 1})
    config = tmp_path / "policy-config.json"
    config.write_text(json.dumps({"recycle-bin-retention-minimum": "advisory"}))
    code, out, _ = run_cli(backupctl, "--config-file", str(stack), "--policy-config", str(config))
    assert code == EXIT_OK and "[advisory]  recycle-bin-retention-minimum" in out


# --- bad policy config: exit 2, one line -----------------------------------------------------------

@pytest.mark.parametrize("content,expected", [
    ("{not json", "not valid JSON"),
    ('["backup-retention-minimum"]', "must be a JSON object of policy name -> config"),
    ('{"all": "strict"}', "all.enforcementLevel = 'strict': must be one of advisory, mandatory, remediate, disabled"),
    ('{"backup-retention-minimun": {"minRetentionDays": 7}}',
     "backup-retention-minimun: no such policy; allowed: all,"),
    ('{"backup-retention-minimum": {"minDays": 7}}', "backup-retention-minimum.minDays: no such setting; allowed: "
                                                     "enforcementLevel, minRetentionDays"),
    ('{"backup-retention-minimum": {"minRetentionDays": 0}}', "backup-retention-minimum.minRetentionDays = 0"),
])
def test_bad_policy_config_exits_2_with_one_line(backupctl, tmp_path, content, expected):
    config = tmp_path / "policy-config.json"
    config.write_text(content)
    code, out, err = run_cli(backupctl, "--policy-config", str(config))
    assert code == EXIT_USAGE
    [line] = [row for row in err.splitlines() if "error:" in row]
    assert expected in line


def test_missing_policy_config_file_exits_2(backupctl, tmp_path):
    code, _, err = run_cli(backupctl, "--policy-config", str(tmp_path / "absent.json"))
    assert code == EXIT_USAGE and "cannot read" in err


# --- variants that need the program changed: same report path, changed resources -------------------

def test_unprotected_dump_bucket_fails_the_gate(capsys, prod_config, shipped):
    code, out = report(capsys, prod_config, shipped.changed("aws:s3/bucket:Bucket", "quickport-prod-dumps-bucket",
                                                                    protect=False))
    assert code == EXIT_FAILED
    assert "[mandatory]  critical-resources-protected" in out
    assert "S3 bucket 'quickport-prod-dumps-bucket' has protect: false" in out


def test_vault_without_lock_fails_the_gate(capsys, prod_config, shipped):
    lock = [r for r in shipped if r.type == "aws:backup/vaultLockConfiguration:VaultLockConfiguration"
            and r.inputs.get("backupVaultName") == "quickport-prod-vault"]
    resources = Resources(r for r in shipped if r is not lock[0])
    code, out = report(capsys, prod_config, resources)
    assert code == EXIT_FAILED
    assert "backup vault 'quickport-prod-vault' has no vault lock configuration" in out


def test_baseline_without_lock_fails_the_gate(capsys, prod_config, shipped):
    resources = Resources(r for r in shipped if "snapshot_id" not in r.inputs)
    code, out = report(capsys, prod_config, resources, "--json")
    assert code == EXIT_FAILED
    policies = {v["policy"] for v in json.loads(out)["violations"]}
    assert policies == {"baseline-snapshot-locked"}


def test_violations_are_grouped_by_policy_with_each_urn(capsys, prod_config, shipped):
    resources = shipped.changed("aws:s3/bucket:Bucket", "quickport-prod-dumps-bucket", protect=False)
    key = next(r for r in resources if r.type == "aws:kms/key:Key")
    resources = resources.changed(key.type, key.name, protect=False)
    _, out = report(capsys, prod_config, resources)
    assert out.count("- [mandatory]  critical-resources-protected  (2)") == 1
    assert key.urn in out


# --- the pack process ------------------------------------------------------------------------------

def test_stack_without_instance_id_is_reported_by_root_volume_rule(shipped):
    with PolicyGate(stack_config={"aws:region": "ap-south-1"}) as gate:
        result = gate.evaluate(list(shipped))
    [violation] = violations_of(result, "root-volume-in-backup-plan")
    assert violation.message.startswith("the production instance is unknown: set instanceId")


def test_pack_that_fails_to_start_is_reported_with_its_error(tmp_path):
    (tmp_path / "PulumiPolicy.yaml").write_text("name: broken\nruntime: python\n")
    (tmp_path / "__main__.py").write_text("raise SystemExit('broken pack: missing dependency')\n")
    with pytest.raises(PolicyPackError, match="broken pack: missing dependency"):
        PolicyGate(stack_config={}, pack_dir=tmp_path).start()


def test_directory_without_pulumipolicy_yaml_is_not_a_pack(tmp_path):
    with pytest.raises(PolicyPackError, match="no PulumiPolicy.yaml"):
        PolicyGate(stack_config={}, pack_dir=tmp_path).start()


def test_pack_that_prints_a_port_but_never_answers_is_reported_and_stopped(tmp_path):
    (tmp_path / "PulumiPolicy.yaml").write_text("name: mute\nruntime: python\n")
    # A port nothing listens on (bound, then released), and a pack that then just waits.
    (tmp_path / "__main__.py").write_text(
        "import os, pathlib, socket, time\npathlib.Path('pid').write_text(str(os.getpid()))\n"
        "s = socket.socket()\ns.bind(('127.0.0.1', 0))\nport = s.getsockname()[1]\n"
        "s.close()\nprint(port, flush=True)\ntime.sleep(120)\n")
    with pytest.raises(PolicyPackError, match=r"printed port \d+ but did not answer on it within 2s"):
        PolicyGate(stack_config={}, pack_dir=tmp_path, startup_timeout=2).start()
    with pytest.raises(ProcessLookupError):  # the pack was stopped, not left running
        os.kill(int((tmp_path / "pid").read_text()), 0)


def test_the_pack_starting_in_the_background_imports_nothing_on_its_thread():
    """`preview` runs the program (which imports pulumi) while the pack starts on a worker thread.
    Imports on two threads at once can hand one of them a partially initialised pulumi module (CI saw
    `preview` fail with "partially initialized module ... circular import"), so every import the
    start needs happens before the thread begins. A fresh interpreter, so nothing is imported yet."""
    script = textwrap.dedent("""
        import json, sys, threading
        imported_on = []
        class Recorder:
            def find_spec(self, name, path=None, target=None):
                imported_on.append((threading.current_thread().name, name))
        sys.meta_path.insert(0, Recorder())
        from scripts.offline.policy_gate import PolicyGate
        gate = PolicyGate(stack_config={"aws:region": "ap-south-1"}).start_in_background()
        gate.wait_started()
        gate.close()
        print(json.dumps({"on_the_pack_thread": [n for t, n in imported_on if t == "policy-pack-start"],
                          "policies": len(gate.policies)}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["policies"] > 0  # the pack did start, on that thread
    assert report["on_the_pack_thread"] == []


# --- every option on passes the gate ----------------------------------------------------------------

OPTIONS = {
    "copyToRegion": {"backup": {"copyToRegion": "ap-southeast-1"}},
    "airGappedVault": {"backup": {"airGappedVault": {"minRetentionDays": 7, "maxRetentionDays": 35}},
                       "ebsEncryption": {"defaultKmsKey": "stack"}},
    "objectLock-compliance": {"dumps": {"objectLock": {"mode": "compliance", "days": 60}}},
    "guardRails-roles-and-users": {"guardRails": {"operatorRoles": ["ops-admin"], "operatorUsers": ["asha"]}},
    "ebsEncryption-key-arn": {"ebsEncryption": {
        "defaultKmsKey": "arn:aws:kms:ap-south-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"}},
    "monitoring-existing-trail": {"monitoring": {"trail": "existing"}},
}
OPTIONS["all-at-once"] = {key: value for option in OPTIONS.values() for key, value in option.items()}
OPTIONS["all-at-once"]["backup"] = {**OPTIONS["copyToRegion"]["backup"], **OPTIONS["airGappedVault"]["backup"]}
OPTIONS["all-at-once"]["ebsEncryption"] = {"defaultKmsKey": "stack"}


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_each_documented_option_passes_the_gate(backupctl, tmp_path, prod_config, option):
    stack = write_stack(tmp_path, prod_config, **OPTIONS[option])
    code, out, err = run_cli(backupctl, "--config-file", str(stack), "--json")
    document = json.loads(out)
    assert (code, document.get("violations")) == (EXIT_OK, []), err


def test_guard_rails_attached_to_nobody_fail_the_gate(backupctl, tmp_path, prod_config):
    config = {k: v for k, v in prod_config.items() if k != f"{NS}:guardRails"}
    stack = tmp_path / "Pulumi.variant.yaml"
    stack.write_text(yaml.safe_dump({"config": config}))
    code, out, _ = run_cli(backupctl, "--config-file", str(stack), "--json")
    [violation] = json.loads(out)["violations"]
    assert code == EXIT_FAILED and violation["policy"] == "operator-guard-rails-attached"
    assert "is attached to nobody" in violation["message"]


def test_a_dump_bucket_without_object_lock_fails_the_gate(capsys, prod_config, shipped):
    lock = shipped.find("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
                        "quickport-prod-dumps-object-lock")
    code, out = report(capsys, prod_config, Resources(r for r in shipped if r is not lock), "--json")
    assert code == EXIT_FAILED
    assert {v["policy"] for v in json.loads(out)["violations"]} == {"dump-bucket-object-lock"}


@pytest.mark.parametrize("prefix", ["binlog", "pitr/segments"])
def test_binlog_segments_expiring_before_the_dumps_fail_the_gate(backupctl, tmp_path, prod_config, prefix):
    # The pack reads the binlog prefix from the stack config it is handed, as the Pulumi CLI hands it.
    stack = write_stack(tmp_path, prod_config, binlog={"prefix": prefix, "retentionDays": 20})
    code, out, _ = run_cli(backupctl, "--config-file", str(stack), "--json")
    [violation] = json.loads(out)["violations"]
    assert code == EXIT_FAILED and violation["policy"] == "binlog-retention-covers-dumps"
    assert violation["message"].startswith(
        f"lifecycle rule 'expire-{prefix.replace('/', '-')}' expires binlog segments under {prefix}/ after 20 days; "
        "rule 'expire-mysql' keeps mysql/ 30 days")


def test_a_shortened_binlog_rule_in_the_shipped_stack_fails_the_gate(capsys, prod_config, shipped):
    lifecycle = shipped.find("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                             "quickport-prod-dumps-lifecycle")
    rules = [{**r, "expiration": {"days": 14}} if r.get("id") == "expire-binlog" else r
             for r in lifecycle.inputs["rules"]]
    code, out = report(capsys, prod_config, shipped.changed(lifecycle.type, lifecycle.name, rules=rules), "--json")
    assert code == EXIT_FAILED
    assert {v["policy"] for v in json.loads(out)["violations"]} == {"binlog-retention-covers-dumps"}
