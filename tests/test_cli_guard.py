"""`backupctl guard --action A -- COMMAND...`: COMMAND runs only after a verified snapshot.

The CLI runs in-process against the emulator; a few tests run the real launcher as a subprocess to see
exactly what reaches stdout. The guarded COMMAND is a small Python program that records its argv.
"""
from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

from botocore.stub import ANY

from scripts.offline.stubs import PartialStubber
from tests.fixtures.aws_account import strategy_snapshots

RECORDER = "import json, sys; open(sys.argv[1], 'w').write(json.dumps(sys.argv[2:])); sys.exit(int(sys.argv[2]))"


def _command(marker: Path, code: int = 0, *extra: str) -> list[str]:
    """A command that writes its arguments to `marker` and exits with `code`."""
    return [sys.executable, "-c", RECORDER, str(marker), str(code), *extra]


def test_guard_runs_the_command_after_the_checklist_and_returns_its_exit_code(prod_instance, backupctl,
                                                                               tmp_path):
    marker = tmp_path / "ran"

    result = backupctl("guard", "--action", "php-upgrade", *prod_instance.common_args(), "--",
                       *_command(marker, 3))

    assert result.code == 3
    assert marker.exists()
    assert "checklist passed" in result.out and "command exited 3" in result.out


def test_guard_takes_the_snapshot_before_the_command(prod_instance, backupctl, tmp_path):
    backupctl("guard", "--action", "php-upgrade", *prod_instance.common_args(), "--",
              *_command(tmp_path / "ran", 0))

    events = [line["event"] for line in prod_instance.log_lines()]
    assert events.index("snapshot-created") < events.index("checklist") < events.index("guard-command-started")
    assert events[-1] == "guard-command-finished"
    assert [s["VolumeId"] for s in strategy_snapshots(prod_instance.ec2)] == [prod_instance.root_volume_id]


def test_guard_does_not_run_the_command_when_the_checklist_fails(prod_instance_without_eip, backupctl, tmp_path):
    marker = tmp_path / "ran"

    result = backupctl("guard", "--action", "php-upgrade", *prod_instance_without_eip.common_args(), "--",
                       *_command(marker, 0))

    assert result.code == 1
    assert not marker.exists()
    assert "[FAIL] Elastic IP noted" in result.out and "COMMAND NOT RUN" in result.out


def test_guard_does_not_run_the_command_when_the_snapshot_fails(prod_instance, backupctl, tmp_path):
    marker = tmp_path / "ran"
    ec2 = prod_instance.client("ec2")
    stubber = PartialStubber(ec2, {"DescribeSnapshots"})
    name = f"prod-root-{dt.datetime.now(dt.timezone.utc).date()}-before-php-upgrade"
    stubber.add_response("describe_snapshots", {"Snapshots": []},
                         {"OwnerIds": ["self"], "Filters": [{"Name": "tag:Name", "Values": [name, f"{name}-*"]}]})
    stubber.add_response("describe_snapshots", {"Snapshots": [{
        "SnapshotId": "snap-0123456789abcdef0", "VolumeId": prod_instance.root_volume_id, "State": "error",
        "StateMessage": "internal error"}]}, {"SnapshotIds": ANY})

    with stubber:
        result = backupctl("guard", "--action", "php-upgrade", *prod_instance.common_args(), "--",
                           *_command(marker, 0), clients={"ec2": ec2})

    assert result.code == 1
    assert not marker.exists()
    assert "COMMAND NOT RUN" in result.err


def test_guard_runs_the_argv_as_given_without_a_shell(prod_instance, backupctl, tmp_path):
    marker = tmp_path / "ran"

    backupctl("guard", "--action", "php-upgrade", *prod_instance.common_args(), "--",
              *_command(marker, 0, "$HOME", "a; rm -rf /tmp/x", "*"))

    assert json.loads(marker.read_text()) == ["0", "$HOME", "a; rm -rf /tmp/x", "*"]


def test_guard_with_a_bad_action_exits_2_and_runs_nothing(prod_instance, backupctl, tmp_path):
    marker = tmp_path / "ran"

    result = backupctl("guard", "--action", "PHP Upgrade", *prod_instance.common_args(), "--",
                       *_command(marker, 0))

    assert result.code == 2
    assert not marker.exists()
    assert strategy_snapshots(prod_instance.ec2) == []


def test_guard_without_a_command_exits_2_before_any_snapshot(prod_instance, backupctl):
    result = backupctl("guard", "--action", "php-upgrade", *prod_instance.common_args())

    assert result.code == 2
    assert "COMMAND" in result.err
    assert strategy_snapshots(prod_instance.ec2) == []


def test_guard_reports_127_for_a_command_that_does_not_exist(prod_instance, backupctl):
    result = backupctl("guard", "--action", "php-upgrade", *prod_instance.common_args(), "--",
                       "/nonexistent/maintenance-script")

    assert result.code == 127
    assert "command not found" in result.err


def test_guard_json_keeps_stdout_one_document_while_the_command_prints(prod_instance, backupctl, tmp_path):
    marker = tmp_path / "ran"
    chatty = [sys.executable, "-c", "print('hello from the maintenance command'); " + RECORDER,
              str(marker), "0"]

    proc = backupctl.launch("guard", "--action", "php-upgrade", "--json", *prod_instance.common_args(), "--",
                            *chatty)

    assert proc.code == 0, proc.err
    doc = proc.json()
    assert doc["command"] == {"argv": chatty, "run": True, "exitCode": 0}
    assert "hello from the maintenance command" in proc.err


def test_guard_json_reports_the_command_as_not_run_when_the_checklist_fails(prod_instance_without_eip, backupctl,
                                                                           tmp_path):
    result = backupctl("guard", "--action", "php-upgrade", "--json", *prod_instance_without_eip.common_args(),
                       "--", *_command(tmp_path / "ran", 0))

    assert result.code == 1
    assert result.json()["command"]["run"] is False
    assert result.json()["checklist"]["ok"] is False
