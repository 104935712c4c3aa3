"""BinlogShipperDocument on the mock engine: a document of its own embeds the shipper verbatim, checks the
server before it enables a hardened systemd service, its parameters refuse shell injection, an association
applies it once and again when the shipper changes, and the instance role may write only the binlog
prefix and read only the shipper's password."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess

import pytest

from components.config import REPO_ROOT
from components.dump_document import (
    BINLOG_INSTALL_DIR,
    BINLOG_PARAMETER_PATTERNS,
    MAX_DOCUMENT_BYTES,
    SERVICE,
    install_and_run_commands,
    service_unit,
    written_script,
)

SHIPPER = REPO_ROOT / "scripts" / "agent" / "binlog_ship.py"
DOCUMENT = ("aws:ssm/document:Document", "quickport-prod-binlog-document")
ASSOCIATION = ("aws:ssm/association:Association", "quickport-prod-binlog-association")
ROLE_POLICY = ("aws:iam/rolePolicy:RolePolicy", "quickport-prod-binlog-instance-policy")
INJECTIONS = ["; rm -rf /", "x'; rm -rf / #", "$(reboot)", "`id`", "a b", "a|b", "a&&b", "a\nrm -rf /", "'"]


def _content(declared) -> dict:
    return json.loads(declared.one(*DOCUMENT).inputs["content"])


def _commands(declared) -> list[str]:
    [step] = _content(declared)["mainSteps"]
    assert step["action"] == "aws:runShellScript" and step["name"] == "installBinlogShipper"
    return step["inputs"]["runCommand"]


def _heredoc(commands: list[str], delimiter: str) -> str:
    start = next(i for i, c in enumerate(commands) if c.endswith(f"<<'{delimiter}'"))
    return "\n".join(commands[start + 1:commands.index(delimiter, start + 1)]) + "\n"


def _unit(declared) -> str:
    return _heredoc(_commands(declared), "QUICKPORT_BINLOG_UNIT_EOF")


def test_shipper_has_a_document_of_its_own_within_the_size_limit(prod_stack):
    document = prod_stack.one(*DOCUMENT)
    assert document.inputs["name"] == "quickport-prod-binlog-shipper"
    assert document.inputs["documentType"] == "Command" and _content(prod_stack)["schemaVersion"] == "2.2"
    assert len(document.inputs["content"].encode()) <= MAX_DOCUMENT_BYTES
    # and the dump document stays as it was: one job per document
    assert "binlog_ship" not in prod_stack.one("aws:ssm/document:Document", "quickport-prod-dump-document").inputs[
        "content"]


def test_document_embeds_the_shipper_verbatim(prod_stack):
    assert _heredoc(_commands(prod_stack), "QUICKPORT_BINLOG_PY_EOF") == SHIPPER.read_text()


def test_installed_shipper_is_byte_for_byte_the_file_and_readable_by_the_service_user(tmp_path):
    target = tmp_path / "lib"
    commands = install_and_run_commands(SHIPPER.read_text(), ":", install_dir=str(target), name="binlog_ship.py",
                                        heredoc_end="QUICKPORT_BINLOG_PY_EOF", dir_mode="0755")
    result = subprocess.run(["sh", "-c", "\n".join(commands)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    installed = target / "binlog_ship.py"
    assert installed.read_bytes() == SHIPPER.read_bytes()
    assert (oct(target.stat().st_mode & 0o777), oct(installed.stat().st_mode & 0o777)) == ("0o755", "0o644")
    assert [p.name for p in target.iterdir()] == ["binlog_ship.py"]


def test_check_runs_before_the_service_is_enabled_and_fails_the_step(prod_stack):
    commands = _commands(prod_stack)
    assert commands[0] == "set -eu"       # any failing line fails the step: the check stops it here
    check = next(i for i, c in enumerate(commands) if c.startswith("/usr/bin/python3") and "--check" in c)
    enable = commands.index(f"systemctl enable {SERVICE}")
    assert check < enable < commands.index(f"systemctl restart {SERVICE}")
    assert commands[check] == (
        f"/usr/bin/python3 {BINLOG_INSTALL_DIR}/binlog_ship.py --check"
        " --password-parameter '{{ PasswordParameter }}' --user '{{ User }}' --region '{{ Region }}'"
        " --interval '{{ IntervalSeconds }}' $apply")
    assert "systemctl daemon-reload" in commands and f"systemctl is-active --quiet {SERVICE}" in commands
    systemctl = [c for c in commands if c.startswith("systemctl")]
    assert systemctl and not any(re.search("mariadb|mysql", c) for c in systemctl), "the server is never restarted"


@pytest.mark.parametrize("apply, directories, expected", [
    ("true", ["my.cnf.d"], "--apply-settings {root}/my.cnf.d/90-quickport-binlog.cnf"),
    ("true", ["mysql/mariadb.conf.d"], "--apply-settings {root}/mysql/mariadb.conf.d/90-quickport-binlog.cnf"),
    ("false", ["my.cnf.d"], ""),
])
def test_apply_settings_picks_the_distributions_drop_in_directory(prod_stack, tmp_path, apply, directories,
                                                                 expected):
    commands = _commands(prod_stack)
    start = commands.index("apply=''")
    block = "\n".join(commands[start:commands.index("fi", start) + 1])
    for d in directories:
        (tmp_path / d).mkdir(parents=True)
    script = block.replace("{{ ApplySettings }}", apply).replace("/etc/", f"{tmp_path}/") + '\nprintf %s "$apply"'
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected.format(root=tmp_path)


def test_apply_settings_without_a_drop_in_directory_fails_with_one_line(prod_stack, tmp_path):
    commands = _commands(prod_stack)
    start = commands.index("apply=''")
    block = "\n".join(commands[start:commands.index("fi", start) + 1])
    script = block.replace("{{ ApplySettings }}", "true").replace("/etc/", f"{tmp_path}/")
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "no MariaDB drop-in directory found" in result.stderr


def test_service_unit_is_supervised_and_confined(prod_stack):
    lines = _unit(prod_stack).splitlines()
    for setting in ("Restart=always", "RestartSec=5", f"User={SERVICE}", f"Group={SERVICE}", "NoNewPrivileges=yes",
                    "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
                    "ReadWritePaths=/var/lib/quickport-binlog", f"StateDirectory={SERVICE}", "KillMode=mixed",
                    "CapabilityBoundingSet=", "WantedBy=multi-user.target"):
        assert setting in lines
    [exec_start] = [line for line in lines if line.startswith("ExecStart=")]
    assert "--follow" in exec_start and "--password-parameter {{ PasswordParameter }}" in exec_start
    assert "--state-dir /var/lib/quickport-binlog" in exec_start
    assert "--metrics-stack {{ Stack }} --database {{ Database }}" in exec_start
    assert not any(line.startswith(("Environment", "ExecStartPre")) for line in lines), "no secret in the unit"


def test_service_unit_is_accepted_by_systemd(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    unit = tmp_path / f"{SERVICE}.service"
    text = service_unit()
    for name in BINLOG_PARAMETER_PATTERNS:
        text = text.replace("{{ " + name + " }}", "x")
    unit.write_text(text.replace("User=quickport-binlog", "User=root").replace("Group=quickport-binlog", "Group=root"))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in result.stderr.splitlines()
                if SERVICE in line and "Unknown" in line or "Failed to parse" in line or "Invalid" in line]
    assert problems == []


def test_service_user_is_created_as_a_system_account_without_a_login(prod_stack):
    [line] = [c for c in _commands(prod_stack) if "useradd" in c]
    assert line.startswith(f"id -u {SERVICE} >/dev/null 2>&1 || useradd --system")
    assert "--shell /sbin/nologin" in line and line.endswith(f" {SERVICE}")


def test_parameters_have_patterns_and_the_association_satisfies_them(prod_stack):
    parameters = _content(prod_stack)["parameters"]
    assert sorted(parameters) == sorted(BINLOG_PARAMETER_PATTERNS)
    given = prod_stack.one(*ASSOCIATION).inputs["parameters"]
    assert sorted(given) == sorted(parameters)
    for name, value in given.items():
        assert re.match(parameters[name]["allowedPattern"], value), (name, value)
    assert given["Prefix"] == "binlog" and given["User"] == "binlog"
    assert given["PasswordParameter"] == "/quickport/prod/mysql/binlog-password"
    assert (given["IntervalSeconds"], given["SpoolMegabytes"], given["ApplySettings"]) == ("30", "1024", "false")


@pytest.mark.parametrize("name", sorted(BINLOG_PARAMETER_PATTERNS))
def test_parameter_patterns_reject_shell_injection(name):
    for value in INJECTIONS:
        assert not re.match(BINLOG_PARAMETER_PATTERNS[name], value), (name, value)


def test_interval_pattern_admits_exactly_5_to_300():
    pattern = BINLOG_PARAMETER_PATTERNS["IntervalSeconds"]
    assert [n for n in range(0, 1000) if re.match(pattern, str(n))] == list(range(5, 301))


def test_association_applies_once_and_again_when_the_shipper_changes(prod_stack):
    association = prod_stack.one(*ASSOCIATION)
    assert "scheduleExpression" not in association.inputs
    assert association.inputs["documentVersion"] == "$LATEST"
    assert association.inputs["targets"] == [{"key": "InstanceIds", "values": ["i-0a1b2c3d4e5f67890"]}]
    digest = hashlib.sha256(written_script(SHIPPER.read_text())).hexdigest()
    assert association.inputs["parameters"]["ScriptSha256"] == digest
    assert prod_stack.one(*ROLE_POLICY).urn in association.dependencies


def test_config_values_reach_the_association(stack_with):
    declared = stack_with({"quickport-backup:binlog": {"intervalSeconds": 5, "spoolMegabytes": 2048,
                                                       "applyServerSettings": True, "prefix": "pitr"}})
    given = declared.one(*ASSOCIATION).inputs["parameters"]
    assert (given["IntervalSeconds"], given["SpoolMegabytes"], given["ApplySettings"], given["Prefix"]) == (
        "5", "2048", "true", "pitr")


def test_instance_role_may_write_only_the_binlog_prefix_and_read_only_its_password(prod_stack):
    policy = prod_stack.one(*ROLE_POLICY)
    assert policy.inputs["role"] == "quickport-prod-ec2"
    statements = {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}
    assert sorted(statements) == ["ReadBinlogPassword", "UseBucketKey", "WriteBinlogSegments"]
    bucket = "arn:aws:s3:::quickport-prod-db-dumps-ap-south-1"
    assert statements["WriteBinlogSegments"] == {"Sid": "WriteBinlogSegments", "Effect": "Allow",
                                                 "Action": "s3:PutObject", "Resource": f"{bucket}/binlog/*"}
    assert statements["ReadBinlogPassword"]["Action"] == "ssm:GetParameter"
    assert statements["ReadBinlogPassword"]["Resource"] == (
        "arn:aws:ssm:ap-south-1:123456789012:parameter/quickport/prod/mysql/binlog-password")
    assert statements["UseBucketKey"]["Action"] == "kms:GenerateDataKey"
    assert statements["UseBucketKey"]["Resource"] == prod_stack.one("aws:kms/key:Key", "quickport-prod-dumps-key") \
        .outputs["arn"]


def test_disabled_binlog_declares_no_shipper(stack_with):
    declared = stack_with({"quickport-backup:binlog": {"enabled": False}})
    assert declared.of_type("quickport:backup:BinlogShipperDocument") == []
    assert [r.name for r in declared.of_type("aws:ssm/document:Document")] == ["quickport-prod-dump-document"]


def test_every_shipper_child_is_parented_to_the_component(prod_stack):
    component = prod_stack.one("quickport:backup:BinlogShipperDocument")
    assert {r.type for r in prod_stack.children_of(component)} == {
        "aws:ssm/document:Document", "aws:ssm/association:Association", "aws:iam/rolePolicy:RolePolicy"}


def test_agent_and_alarms_use_one_metrics_namespace():
    from components.signals import METRICS_NAMESPACE
    from scripts.agent import binlog_ship
    assert binlog_ship.METRICS_NAMESPACE == METRICS_NAMESPACE
