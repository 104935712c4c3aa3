"""backupctl's shared error handling: one line for people, one JSON document with --json, no traceback."""
import boto3
from botocore.parsers import ResponseParserError


def _ec2_answering_garbage():
    """A real EC2 client whose every call fails to parse, as when an endpoint answers with a web
    page (a captive proxy, an emulator lacking the API): botocore raises ResponseParserError."""
    ec2 = boto3.client("ec2", region_name="ap-south-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")

    def garbage(**_):
        raise ResponseParserError("Unable to parse response (syntax error), invalid XML received")

    ec2.meta.events.register("before-call.ec2.*", garbage)
    return ec2


def test_unparseable_aws_answer_is_one_line_exit_1_not_a_traceback(tmp_path, backupctl):
    result = backupctl("verify", "snap-0123456789abcdef0", "--instance-id", "i-0123456789abcdef0",
                       "--log-file", str(tmp_path / "ops.jsonl"), clients={"ec2": _ec2_answering_garbage()})
    err = result.err.strip().splitlines()
    assert result.code == 1
    assert err == ["backupctl verify: AWS error: Unable to parse response (syntax error), invalid XML received"]


def test_failure_with_json_still_prints_one_json_document(tmp_path, backupctl):
    result = backupctl("preview", "--json", "--config-file", str(tmp_path / "missing.yaml"))
    out = result.json()
    assert result.code == 2
    assert out["ok"] is False and out["exitCode"] == 2 and "does not exist" in out["error"]


def test_unreadable_config_file_is_a_one_line_usage_error_not_a_traceback(tmp_path, backupctl):
    result = backupctl("verify", "snap-0123456789abcdef0", "--config-file", str(tmp_path),
                       "--log-file", str(tmp_path / "ops.jsonl"))
    err = result.err.strip().splitlines()
    assert result.code == 2
    assert err == [f"backupctl verify: error: --config-file {tmp_path}: the stack config file cannot be read "
                   "(Is a directory); must be a readable Pulumi.<stack>.yaml"]
