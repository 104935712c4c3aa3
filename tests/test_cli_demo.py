"""`backupctl demo`: the whole tour runs end to end on its own in-process emulator and exits 0.

Run as a subprocess (QUICKPORT_NO_VENV=1, the project's interpreter) exactly as a newcomer would,
so its environment changes stay in that process."""
from __future__ import annotations

import json
import os

import pytest

from tests.fixtures.cli import launch


@pytest.fixture(scope="module")
def demo_json(tmp_path_factory):
    """One demo run (it takes about a minute) in an environment without AWS settings: its --json
    document, its kept files."""
    tmp = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["XDG_STATE_HOME"] = str(tmp / "state")
    result = launch("demo", "--json", "--keep-dir", str(tmp / "kept"), env=env, cwd=tmp, timeout=540)
    return result, tmp


@pytest.mark.slow
def test_demo_runs_every_step_as_expected_and_exits_0(demo_json):
    result, _ = demo_json
    doc = result.json()
    assert result.code == 0, result.err[-3000:]
    assert doc["ok"] is True
    assert [s["number"] for s in doc["steps"] if s["ok"]] == list(range(1, 9))


@pytest.mark.slow
def test_demo_restore_swaps_the_root_and_keeps_the_elastic_ip(demo_json):
    result, _ = demo_json
    restore = next(s for s in result.json()["steps"] if s["number"] == 6)
    assert restore["exit_code"] == 0
    assert "Elastic IP still eipalloc-" in restore["note"] and "-> vol-" in restore["note"]


@pytest.mark.slow
def test_demo_audit_reports_what_the_emulator_lacks_as_not_ok(demo_json):
    result, _ = demo_json
    audit = next(s for s in result.json()["steps"] if s["number"] == 7)
    assert audit["exit_code"] == 1 and audit["ok"] is True
    assert "could-not-check" in result.err and "recycle-bin" in result.err


@pytest.mark.slow
def test_demo_writes_its_operations_log_only_in_its_own_directory(demo_json):
    _, tmp = demo_json
    events = [json.loads(line)["command"] for line in (tmp / "kept" / "operations.jsonl").read_text().splitlines()]
    assert {"snapshot", "guard", "restore-instance", "audit", "cost", "demo"} <= set(events)
    assert not (tmp / "state" / "quickport-backup" / "operations.jsonl").exists()


@pytest.mark.slow
def test_demo_stack_config_names_the_stand_in_instance(demo_json):
    _, tmp = demo_json
    text = (tmp / "kept" / "Pulumi.demo.yaml").read_text()
    assert "quickport-backup:instanceId: i-" in text and "i-0a1b2c3d4e5f67890" not in text


def test_standing_answers_for_apis_moto_lacks_must_match_the_ec2_model():
    import boto3
    from botocore.exceptions import ParamValidationError

    from scripts.offline.stubs import PartialStubber
    ec2 = boto3.client("ec2", region_name="ap-south-1", aws_access_key_id="x", aws_secret_access_key="x")
    with pytest.raises(ParamValidationError):
        PartialStubber(ec2).always("describe_replace_root_volume_tasks", {"ReplaceRootVolumeTasks": "none"})
