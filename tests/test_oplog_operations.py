"""Every `*-started` line of db-backup and restore-files gets exactly one end line, also when the
operator presses Ctrl-C halfway (KeyboardInterrupt raised from a botocore event hook on the client the
command uses: the call never reaches the emulator, as when Ctrl-C lands during it)."""
from __future__ import annotations

import json

from tests.fixtures.aws_account import client
from tests.test_cli_restore_files import FAST, created_by_run, run_files
from tests.test_db_backup_cli import run, stack_config  # noqa: F401 (fixtures of that module, reused)


def _ctrl_c(**_):
    raise KeyboardInterrupt


def _events(path, prefix: str) -> list[str]:
    """The operation's start and end lines (its step lines, e.g. restore-files-helper, left out)."""
    ends = ("-started", "-finished", "-succeeded", "-failed", "-interrupted")
    return [e for e in (json.loads(line)["event"] for line in path.read_text().splitlines())
            if e.startswith(prefix) and e.endswith(ends)]


def test_ctrl_c_during_db_backup_logs_db_backup_interrupted(backupctl, stack_config, mariadb_server,  # noqa: F811
                                                            tmp_path):
    s3 = client("s3")
    s3.meta.events.register("before-call.s3.CreateMultipartUpload", _ctrl_c)
    s3.meta.events.register("before-call.s3.PutObject", _ctrl_c)

    result = backupctl("db-backup", "--config-file", stack_config, "--socket", mariadb_server.socket,
                       "--log-file", str(tmp_path / "ops.jsonl"), clients={"s3": s3})

    assert result.code == 130
    assert _events(tmp_path / "ops.jsonl", "db-backup-") == ["db-backup-started", "db-backup-interrupted"]


def test_ctrl_c_during_restore_files_logs_restore_files_interrupted_after_cleaning_up(prod, backupctl, tmp_path):
    ec2 = client("ec2")
    ec2.meta.events.register("before-call.ec2.AttachVolume", _ctrl_c)

    code, _, _ = run_files(backupctl, prod, "--path", "/etc/hosts", "--to", str(tmp_path / "o"), "--yes", *FAST,
                           ec2=ec2)

    assert code == 130
    assert _events(prod.log_file, "restore-files-") == ["restore-files-started", "restore-files-interrupted"]
    run_id = json.loads(prod.log_file.read_text().splitlines()[-1])["run_id"]
    instances, volumes = created_by_run(client("ec2"), run_id)
    assert [s for _, s in instances] == ["terminated"] and volumes == []
