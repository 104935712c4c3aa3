"""DumpDocument on the mock engine: the SSM document embeds the dump script verbatim, its parameters
refuse shell injection, the association runs it nightly, the instance role gets only what it needs."""
import json
import re
import subprocess

import pulumi
import pytest

from components.config import REPO_ROOT, DumpConfig
from components.dump_document import (
    INSTALL_DIR,
    PARAMETER_PATTERNS,
    DumpDocument,
    DumpDocumentArgs,
    DumpDocumentError,
    install_and_run_commands,
    verify_and_run_commands,
)

SHIPPED_SCRIPT = REPO_ROOT / "scripts" / "agent" / "quickport_dump.py"
PARAMETERS = ["Bucket", "Compression", "Database", "FilesPrefix", "PasswordParameter", "Prefix", "Region", "Stack",
              "User"]
# The stack also declares the binlog shipper's document, association and policy: look these up by name.
DOCUMENT = ("aws:ssm/document:Document", "quickport-prod-dump-document")
ASSOCIATION = ("aws:ssm/association:Association", "quickport-prod-dump-association")
ROLE_POLICY = ("aws:iam/rolePolicy:RolePolicy", "quickport-prod-dump-instance-policy")
INJECTIONS = ["; rm -rf /", "x'; rm -rf / #", "$(reboot)", "`id`", "a b", "a|b", "a&&b", "a\nrm -rf /", "'"]


@pytest.fixture(scope="module")
def script() -> str:
    """The repository's dump script, read by its own path: the document must embed this file."""
    return SHIPPED_SCRIPT.read_text()


def _content(declared) -> dict:
    return json.loads(declared.one(*DOCUMENT).inputs["content"])


def _steps(declared) -> dict:
    return {step["name"]: step for step in _content(declared)["mainSteps"]}


def _heredoc_body(commands: list[str]) -> str:
    start = next(i for i, c in enumerate(commands) if c.startswith("cat > ") and "<<'" in c)
    delimiter = commands[start].split("<<'")[1].rstrip("'")
    end = commands.index(delimiter, start + 1)
    return "\n".join(commands[start + 1:end]) + "\n"


def _sh(commands: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", "\n".join(commands)], capture_output=True, text=True, timeout=30)


def test_document_is_a_json_command_document_of_schema_2_2(prod_stack):
    document = prod_stack.one(*DOCUMENT)
    assert document.inputs["documentType"] == "Command"
    assert document.inputs["documentFormat"] == "JSON"
    assert _content(prod_stack)["schemaVersion"] == "2.2"


def test_document_has_a_database_step_and_a_files_step_running_shell(prod_stack):
    steps = _steps(prod_stack)
    assert sorted(steps) == ["archiveFiles", "dumpDatabase"]
    assert {s["action"] for s in steps.values()} == {"aws:runShellScript"}


def test_database_step_embeds_the_dump_script_verbatim(prod_stack, script):
    assert _heredoc_body(_steps(prod_stack)["dumpDatabase"]["inputs"]["runCommand"]) == script


def test_heredoc_delimiter_is_quoted_so_the_shell_expands_nothing(prod_stack):
    commands = _steps(prod_stack)["dumpDatabase"]["inputs"]["runCommand"]
    [heredoc] = [c for c in commands if c.startswith("cat > ")]
    assert re.search(r"<<'[A-Z_]+'$", heredoc)


def test_installed_script_is_byte_for_byte_the_repository_file(tmp_path, script):
    install_dir = tmp_path / "run" / "quickport-backup"
    result = _sh(install_and_run_commands(script, ":", install_dir=str(install_dir)))
    assert result.returncode == 0, result.stderr
    assert (install_dir / "quickport_dump.py").read_bytes() == SHIPPED_SCRIPT.read_bytes()


def test_install_directory_and_script_are_private_to_root(tmp_path, script):
    install_dir = tmp_path / "quickport-backup"
    assert _sh(install_and_run_commands(script, ":", install_dir=str(install_dir))).returncode == 0
    assert install_dir.stat().st_mode & 0o777 == 0o700
    assert (install_dir / "quickport_dump.py").stat().st_mode & 0o077 == 0


def test_files_step_runs_the_installed_script_when_its_digest_matches(tmp_path, script):
    install_dir = str(tmp_path / "qb")
    assert _sh(install_and_run_commands(script, ":", install_dir=install_dir)).returncode == 0
    result = _sh(verify_and_run_commands(script, "echo files-step-ran", install_dir=install_dir))
    assert result.returncode == 0 and result.stdout == "files-step-ran\n"


def test_files_step_refuses_a_changed_or_missing_script(tmp_path, script):
    install_dir = tmp_path / "qb"
    assert _sh(install_and_run_commands(script, ":", install_dir=str(install_dir))).returncode == 0
    with open(install_dir / "quickport_dump.py", "a") as f:
        f.write("# tampered\n")
    tampered = _sh(verify_and_run_commands(script, "echo files-step-ran", install_dir=str(install_dir)))
    missing = _sh(verify_and_run_commands(script, "echo files-step-ran", install_dir=str(tmp_path / "none")))
    for result in (tampered, missing):
        assert result.returncode == 1 and "files-step-ran" not in result.stdout
        assert "missing or not the one this document installs" in result.stderr


def test_document_steps_are_the_install_and_verify_commands(prod_stack, script):
    steps = _steps(prod_stack)
    db = steps["dumpDatabase"]["inputs"]["runCommand"]
    files = steps["archiveFiles"]["inputs"]["runCommand"]
    assert db == install_and_run_commands(script, db[-1])
    assert files == verify_and_run_commands(script, files[-1])
    assert f'dir="{INSTALL_DIR}"' in db and f'dir="{INSTALL_DIR}"' in files


def test_database_step_runs_the_db_subcommand_with_every_parameter_quoted(prod_stack):
    invocation = _steps(prod_stack)["dumpDatabase"]["inputs"]["runCommand"][-1]
    assert invocation == (
        "python3 \"$dir/quickport_dump.py\" db --database '{{ Database }}' --bucket '{{ Bucket }}'"
        " --prefix '{{ Prefix }}' --password-parameter '{{ PasswordParameter }}' --user '{{ User }}'"
        " --compression '{{ Compression }}' --region '{{ Region }}' --metrics-stack '{{ Stack }}'"
        " --priority low --verify frames")


def test_database_step_runs_at_the_configured_priority_and_check(stack_with):
    declared = stack_with({"quickport-backup:dumps": {"priority": "idle", "verify": "decompress"}})
    assert _steps(declared)["dumpDatabase"]["inputs"]["runCommand"][-1].endswith(
        " --priority idle --verify decompress")


def test_files_step_archives_every_configured_path(stack_with):
    declared = stack_with({"quickport-backup:files": ["/var/www/quickport/.env", "/opt/gt06-server",
                                                      "/etc/nginx/sites-enabled"]})
    invocation = _steps(declared)["archiveFiles"]["inputs"]["runCommand"][-1]
    assert invocation.startswith("python3 \"$dir/quickport_dump.py\" files --bucket '{{ Bucket }}'"
                                 " --prefix '{{ FilesPrefix }}'")
    assert re.findall(r"--path (\S+)", invocation) == [
        "/var/www/quickport/.env", "/opt/gt06-server", "/etc/nginx/sites-enabled"]


def test_document_declares_exactly_the_dump_parameters(prod_stack):
    assert sorted(_content(prod_stack)["parameters"]) == PARAMETERS


def test_every_parameter_has_an_allowed_pattern(prod_stack):
    for name, parameter in _content(prod_stack)["parameters"].items():
        assert parameter["type"] == "String" and parameter["allowedPattern"] == PARAMETER_PATTERNS[name]


@pytest.mark.parametrize("name", PARAMETERS)
def test_parameter_pattern_rejects_shell_injection(prod_stack, name):
    pattern = _content(prod_stack)["parameters"][name]["allowedPattern"]
    for attempt in INJECTIONS:
        assert re.search(pattern, attempt) is None, (name, attempt)
        assert re.search(pattern, f"mysql{attempt}") is None, (name, attempt)


def test_parameter_defaults_satisfy_their_patterns(prod_stack):
    for name, parameter in _content(prod_stack)["parameters"].items():
        assert re.search(parameter["allowedPattern"], parameter["default"]), name


def test_compression_allows_only_zstd_and_gzip(prod_stack):
    assert _content(prod_stack)["parameters"]["Compression"]["allowedValues"] == ["zstd", "gzip"]


def test_association_runs_the_document_on_the_instance_on_the_dump_schedule(prod_stack):
    association = prod_stack.one(*ASSOCIATION)
    document = prod_stack.one(*DOCUMENT)
    assert association.inputs["name"] == document.outputs["name"]
    assert association.inputs["targets"] == [{"key": "InstanceIds", "values": ["i-0a1b2c3d4e5f67890"]}]
    assert association.inputs["scheduleExpression"] == "cron(30 20 * * ? *)"
    assert association.inputs["applyOnlyAtCronInterval"] is True


def test_association_runs_the_latest_document_version(prod_stack):
    assert prod_stack.one(*ASSOCIATION).inputs["documentVersion"] == "$LATEST"


def test_association_passes_the_configured_values_which_satisfy_the_patterns(prod_stack):
    parameters = prod_stack.one(*ASSOCIATION).inputs["parameters"]
    assert parameters == {"Database": "quickport_crm_laravel", "Bucket": "quickport-prod-db-dumps-ap-south-1",
                          "Prefix": "mysql", "FilesPrefix": "files",
                          "PasswordParameter": "/quickport/prod/mysql/backup-password", "User": "backup",
                          "Compression": "zstd", "Region": "ap-south-1", "Stack": "prod"}
    for name, value in parameters.items():
        assert re.search(PARAMETER_PATTERNS[name], value), name


def test_instance_role_policy_is_attached_to_the_configured_role(prod_stack):
    assert prod_stack.one(*ROLE_POLICY).inputs["role"] == "quickport-prod-ec2"


def test_instance_role_may_only_add_objects_under_the_dump_files_and_restores_prefixes(prod_stack):
    statements = json.loads(prod_stack.one(*ROLE_POLICY).inputs["policy"])["Statement"]
    by_sid = {s["Sid"]: s for s in statements}
    assert sorted(by_sid) == ["HandRestoresBack", "PublishDumpMetrics", "ReadBucketEncryption", "ReadDumpPassword",
                              "UseBucketKey", "WriteDumpsAndFiles"]
    assert all(s["Effect"] == "Allow" and "Condition" not in s for s in statements
               if s["Sid"] != "PublishDumpMetrics")
    write = by_sid["WriteDumpsAndFiles"]
    assert sorted(write["Action"]) == ["s3:AbortMultipartUpload", "s3:PutObject"]
    bucket = "arn:aws:s3:::quickport-prod-db-dumps-ap-south-1"
    assert write["Resource"] == [f"{bucket}/mysql/*", f"{bucket}/files/*"]
    # restore-files' SSM output: put only (no abort), and reading the bucket's encryption setting.
    assert (by_sid["HandRestoresBack"]["Action"], by_sid["HandRestoresBack"]["Resource"]) == (
        "s3:PutObject", f"{bucket}/restores/*")
    assert (by_sid["ReadBucketEncryption"]["Action"], by_sid["ReadBucketEncryption"]["Resource"]) == (
        "s3:GetEncryptionConfiguration", bucket)


def test_instance_role_may_use_only_the_bucket_key(prod_stack):
    statements = json.loads(prod_stack.one(*ROLE_POLICY).inputs["policy"])["Statement"]
    [kms] = [s for s in statements if s["Sid"] == "UseBucketKey"]
    assert sorted(kms["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert kms["Resource"] == prod_stack.one("aws:kms/key:Key", "quickport-prod-dumps-key").outputs["arn"]


def test_instance_role_may_read_only_the_password_parameter(prod_stack):
    statements = json.loads(prod_stack.one(*ROLE_POLICY).inputs["policy"])["Statement"]
    [ssm] = [s for s in statements if s["Sid"] == "ReadDumpPassword"]
    assert ssm["Action"] == "ssm:GetParameter"
    assert ssm["Resource"] == "arn:aws:ssm:ap-south-1:123456789012:parameter/quickport/prod/mysql/backup-password"


def test_instance_role_may_publish_metrics_only_into_the_backup_namespace(prod_stack):
    statements = json.loads(prod_stack.one(*ROLE_POLICY).inputs["policy"])["Statement"]
    [metrics] = [s for s in statements if s["Sid"] == "PublishDumpMetrics"]
    # PutMetricData supports no resource ARNs; the namespace condition key is what scopes it.
    assert metrics == {"Sid": "PublishDumpMetrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData",
                       "Resource": "*", "Condition": {"StringEquals": {"cloudwatch:namespace": "QuickportBackup"}}}


def test_agent_and_alarms_use_one_metrics_namespace():
    from components.signals import METRICS_NAMESPACE
    from scripts.agent import quickport_dump
    assert quickport_dump.METRICS_NAMESPACE == METRICS_NAMESPACE


def test_association_waits_for_the_instance_policy_and_the_bucket(prod_stack):
    association = prod_stack.one(*ASSOCIATION)
    assert prod_stack.one(*ROLE_POLICY).urn in association.dependencies
    # A dependency on a component is a dependency on each of its children.
    for type_ in ("aws:s3/bucketPolicy:BucketPolicy", "aws:s3/bucketVersioning:BucketVersioning",
                  "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"):
        [child] = [r for r in prod_stack.of_type(type_) if r.name.startswith("quickport-prod-dumps-")]
        assert child.urn in association.dependencies, type_


def test_every_document_child_is_parented_to_the_component(prod_stack):
    component = prod_stack.one("quickport:backup:DumpDocument")
    assert {r.type for r in prod_stack.children_of(component)} == {
        "aws:ssm/document:Document", "aws:ssm/association:Association", "aws:iam/rolePolicy:RolePolicy"}


def _document_args(script_path) -> DumpDocumentArgs:
    return DumpDocumentArgs(instance_id="i-0a1b2c3d4e5f67890", instance_role_name="role",
                            region="ap-south-1", bucket_name="b", bucket_arn="arn:aws:s3:::b",
                            key_arn="arn:aws:kms:ap-south-1:123456789012:key/k", dumps=DumpConfig(),
                            script_path=script_path)


def test_missing_dump_script_is_a_one_line_run_error(run_component, tmp_path):
    with pytest.raises(DumpDocumentError, match="does not exist") as raised:
        run_component(lambda: DumpDocument("d", _document_args(tmp_path / "absent.py")))
    # RunError: the Pulumi CLI shows the message without a traceback; backupctl preview exits 2.
    assert isinstance(raised.value, pulumi.RunError)
    assert "\n" not in str(raised.value)


def test_script_containing_the_heredoc_delimiter_is_refused(run_component, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("print(1)\nQUICKPORT_DUMP_PY_EOF\nprint(2)\n")
    with pytest.raises(DumpDocumentError, match="ends the heredoc"):
        run_component(lambda: DumpDocument("d", _document_args(bad)))


def test_script_containing_ssm_placeholders_is_refused(run_component, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("print('{{ Database }}')\n")
    with pytest.raises(DumpDocumentError, match="parameter"):
        run_component(lambda: DumpDocument("d", _document_args(bad)))


def test_document_over_the_aws_size_limit_is_refused(run_component, tmp_path):
    big = tmp_path / "big.py"
    big.write_text("# padding\n" * 7000)
    with pytest.raises(DumpDocumentError, match="AWS allows 65536"):
        run_component(lambda: DumpDocument("d", _document_args(big)))
