"""`backupctl audit`: each check ok, FAIL, and could-not-check.

EC2 instances/snapshots, S3, STS and AWS Backup plans/vaults/vault locks are the emulator (fixture
`aws`), arranged by scripts/offline/standin.py. What moto lacks is stubbed with a PartialStubber,
which validates requests and responses against the service model: backup
ListRecoveryPointsByBackupVault and GetBackupVaultAccessPolicy, EC2 DescribeLockedSnapshots and
GetSnapshotBlockPublicAccessState; on those clients every other call still reaches the emulator.
The whole Recycle Bin (rbin) API is a plain Stubber: that client never reaches the emulator.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import boto3
import pytest
import yaml
from botocore.stub import ANY, Stubber

from components.config import AirGappedVault, load_stack_config
from components.schedules import runs_at_least_daily
from scripts.agent import quickport_dump
from scripts.offline import standin
from scripts.offline.stubs import PartialStubber
from scripts.workflows.audit import AuditScope, check_air_gapped_vault
from scripts.workflows.binlog_index import IndexUnreadable, read_chain_index
from tests.fixtures.aws_account import BASELINE, Prod
from tests.fixtures.cli import Backupctl
from tests.fixtures.mariadb import BACKUP_PASSWORD, seed_database

REGION = "ap-south-1"
VAULT = "quickport-prod-vault"
PLAN = "quickport-prod-daily"
BUCKET = "quickport-prod-db-dumps-ap-south-1"
DB = "quickport_crm_laravel"
ACCOUNT = "123456789012"   # moto's default account
TRAIL_BUCKET = f"{BUCKET}-trail"


@dataclass
class ApiError:
    code: str
    message: str = "denied by test"
    status: int = 400


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class Account:
    """A strategy-compliant stand-in account, plus the stubbed answers of the APIs moto lacks."""
    prod: Prod
    baseline_snapshot_id: str
    backupctl: Backupctl
    recovery_points: Any = None
    vault_policy: Any = None
    rbin_rules: Any = None
    image_rules: Any = None
    bucket_policy: Any = None
    locks: Any = None
    block_public_access: Any = "block-all-sharing"
    stubbers: list = field(default_factory=list)

    @property
    def config_file(self) -> Path:
        return self.prod.config_file

    @property
    def log_file(self) -> Path:
        return self.prod.log_file

    def client(self, service: str) -> Any:
        return self.prod.client(service)

    def instance_arn(self) -> str:
        return f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{self.prod.instance_id}"


def _good_policy() -> dict:
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "DenyRecoveryPointDeletion", "Effect": "Deny", "Principal": {"AWS": "*"},
        "Action": ["backup:DeleteRecoveryPoint", "backup:UpdateRecoveryPointLifecycle",
                   "backup:PutBackupVaultAccessPolicy"], "Resource": "*"}]}


def _bucket_policy() -> dict:
    """The stack's dump bucket policy (components/dump_bucket.py)."""
    arn = f"arn:aws:s3:::{BUCKET}"
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        {"Sid": "DenyObjectVersionDeletion", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObjectVersion",
         "Resource": f"{arn}/*"},
        {"Sid": "DenyPolicyChangesExceptByRoot", "Effect": "Deny", "Principal": "*",
         "Action": ["s3:PutBucketPolicy", "s3:DeleteBucketPolicy"], "Resource": arn}]}


def _recovery_point(account: Account, age_hours: float, status: str = "COMPLETED") -> dict:
    created = _now() - dt.timedelta(hours=age_hours)
    return {"RecoveryPointArn": f"arn:aws:ec2:{REGION}::image/ami-0{int(age_hours * 10):016x}",
            "BackupVaultName": VAULT, "ResourceArn": account.instance_arn(), "ResourceType": "EC2",
            "Status": status, "CreationDate": created, "CompletionDate": created + dt.timedelta(minutes=9)}


def _rbin_rule(retention_days: int = 7, lock_state: Optional[str] = "locked", tags: Optional[list] = None,
               resource_type: str = "EBS_SNAPSHOT") -> dict:
    rule_id = "a1b2c3d4e5f" if resource_type == "EBS_SNAPSHOT" else "f5e4d3c2b1a"
    rule = {"Identifier": rule_id, "ResourceType": resource_type, "Status": "available",
            "RetentionPeriod": {"RetentionPeriodValue": retention_days, "RetentionPeriodUnit": "DAYS"},
            "RuleArn": f"arn:aws:rbin:{REGION}:{ACCOUNT}:rule/{rule_id}"}
    if lock_state:
        rule["LockState"] = lock_state
        rule["LockConfiguration"] = {"UnlockDelay": {"UnlockDelayValue": 7, "UnlockDelayUnit": "DAYS"}}
    if tags:
        rule["ResourceTags"] = tags
    return rule


def _lock(snapshot_id: str, state: str = "governance", days_left: int = 20) -> dict:
    return {"OwnerId": ACCOUNT, "SnapshotId": snapshot_id, "LockState": state, "LockDuration": 30,
            "LockCreatedOn": _now() - dt.timedelta(days=10),
            "LockExpiresOn": _now() + dt.timedelta(days=days_left)}


# The dump's binlog coordinates as issue 12's agent records them (mariadb-dump --master-data=2 --gtid);
# until that agent is merged, the tests add the field to the manifest the real publish() writes.
COORDINATES = {"file": "mariadb-bin.000012", "position": 1234, "gtid": "0-1-123", "server_id": 1}
NO_FIELD = object()


def _write_dump(s3, age_hours: float = 2.0, binlog: Any = COORDINATES, latest: bool = True) -> dict:
    """A good dump as scripts/agent/quickport_dump.py leaves it: the object, then publish() writes the
    manifest and latest.json (latest=False: the manifest only, an older dump). Returns the manifest."""
    end = _now() - dt.timedelta(hours=age_hours)
    key = f"mysql/{DB}/{end:%Y/%m/%d}/{DB}-{end:%Y%m%dT%H%M%SZ}.sql.zst"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"dump bytes")
    manifest = {"format": quickport_dump.MANIFEST_FORMAT, "kind": "database", "bucket": BUCKET, "key": key,
                "bytes": 10, "sha256": "0" * 64, "compression": "zstd", "database": DB,
                "started_at": quickport_dump.isoformat(end - dt.timedelta(minutes=5)),
                "finished_at": quickport_dump.isoformat(end), "tables": {}}
    if binlog is not NO_FIELD:
        manifest["binlog"] = binlog
    if latest:
        quickport_dump.publish(s3, BUCKET, f"mysql/{DB}/latest.json", manifest)
    else:
        s3.put_object(Bucket=BUCKET, Key=quickport_dump.manifest_key_for(key), Body=json.dumps(manifest).encode())
    return manifest


def _ago(**delta: float) -> str:
    return quickport_dump.isoformat(_now() - dt.timedelta(**delta))


def _write_chain(s3, *, started_hours: float = 30, server_id: int = 1,
                 segments: tuple[tuple[int, float], ...] = ((11, 20), (12, 1.5), (13, 0.2)),
                 confirmed: Optional[int] = 14, confirmed_seconds: float = 5, closed: Optional[dict] = None,
                 prefix: str = "binlog", page_segments: int = 100, index_format: int = 2) -> str:
    """A chain exactly as the shipper leaves it (docs/binlog-shipping.md): each segment object, its
    manifest, then the index: the pages sealed while the head would hold more than `page_segments`,
    then the head (`index_format` 1: every entry in the head, as the agent before paging wrote it).
    `segments` are (sequence number, hours since its last event). Returns the chain id."""
    started = _now() - dt.timedelta(hours=started_hours)
    chain = f"{started:%Y%m%dT%H%M%SZ}-s{server_id}"
    entries, previous = [], None
    for seq, hours in segments:
        file = f"mariadb-bin.{seq:06d}"
        key, body = f"{prefix}/{chain}/{file}", f"raw binlog {seq}".encode()
        s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType="application/octet-stream",
                      ChecksumAlgorithm="CRC32")
        entry = {"file": file, "key": key, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                 "first_gtid": f"0-{server_id}-{seq * 10}", "last_gtid": f"0-{server_id}-{seq * 10 + 9}",
                 "first_event_at": _ago(hours=hours + 0.5), "last_event_at": _ago(hours=hours)}
        s3.put_object(Bucket=BUCKET, Key=key + ".json", Body=json.dumps({
            "format": "quickport-binlog-segment/1", "chain": chain, "server_id": server_id, **entry,
            "end_position": len(body), "previous_file": previous, "shipped_at": _ago(hours=hours)}).encode())
        entries.append(entry)
        previous = file
    first = segments[0][0] if segments else confirmed
    pages = max(0, (len(entries) - 1) // page_segments) if index_format == 2 else 0
    for number in range(pages):
        s3.put_object(Bucket=BUCKET, Key=_page_key(chain, number, prefix), Body=json.dumps({
            "format": "quickport-binlog-index-page/1", "chain": chain, "page": number,
            "segments": entries[number * page_segments:(number + 1) * page_segments]}).encode())
    head = {"format": f"quickport-binlog-index/{index_format}", "chain": chain, "server_id": server_id,
            "host": "ip-10-0-0-5", "started_at": quickport_dump.isoformat(started),
            "first_file": f"mariadb-bin.{first:06d}", **({"pages": pages} if index_format == 2 else {}),
            "segments": entries[pages * page_segments:], "confirmed_at": _ago(seconds=confirmed_seconds),
            "confirmed_file": f"mariadb-bin.{confirmed:06d}" if confirmed else None, "confirmed_position": 385,
            "closed": closed}
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{chain}/index.json", Body=json.dumps(head).encode())
    return chain


def _page_key(chain: str, number: int, prefix: str = "binlog") -> str:
    return f"{prefix}/{chain}/index/{number:05d}.json"


def _write_gap(s3, chain: str, hours: float, reason: str = "purged before shipped") -> str:
    detected = _now() - dt.timedelta(hours=hours)
    key = f"binlog/gaps/{detected:%Y%m%dT%H%M%SZ}-{chain}.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps({
        "format": "quickport-binlog-gap/1", "chain": chain, "detected_at": quickport_dump.isoformat(detected),
        "after_file": "mariadb-bin.000012", "missing_from": "mariadb-bin.000013", "reason": reason,
        "latest_restorable_at": _ago(hours=hours + 0.1)}).encode())
    return key


GOOD_PLAN_RULE = {"ScheduleExpression": "cron(0 20 * * ? *)", "Lifecycle": {"DeleteAfterDays": 7}}


@pytest.fixture
def plan_rule() -> Optional[dict]:
    """The backup plan's one rule (tests parametrize this name to arrange another; None: no plan)."""
    return GOOD_PLAN_RULE


@pytest.fixture
def account(encrypted_prod_instance, plan_rule, backupctl) -> Account:
    """The production instance (encrypted root) with what the strategy makes around it: the locked
    baseline, the locked vault and its plan, the hardened, Object-Locked dump bucket with a fresh dump,
    EBS encryption by default, the alarms and the logging trail, the guard rails on the operators."""
    prod = encrypted_prod_instance
    snap = standin.tag_snapshot(prod, BASELINE)
    standin.build_vault_and_plan(REGION, VAULT, PLAN, min_days=7, max_days=35,
                                 rule={} if plan_rule is None else plan_rule)
    standin.build_dump_bucket(REGION, BUCKET, object_lock=("GOVERNANCE", 30))
    _write_dump(prod.client("s3"))
    _write_chain(prod.client("s3"))   # the shipper's chain holding the dump's binlog file, confirmed 5 s ago
    prod.client("ec2").enable_ebs_encryption_by_default()
    standin.build_monitoring(REGION, "prod", DB, VAULT, TRAIL_BUCKET)
    standin.build_guard_rails(REGION, ("quickport-operators",), "quickport-backup-operator-guard-rails")
    acct = Account(prod, snap, backupctl)
    acct.recovery_points = [_recovery_point(acct, 3), _recovery_point(acct, 27)]
    acct.vault_policy = _good_policy()
    acct.rbin_rules = [_rbin_rule()]
    acct.image_rules = [_rbin_rule(resource_type="EC2_IMAGE")]
    acct.bucket_policy = _bucket_policy()
    acct.locks = [_lock(snap)]
    return acct


def _answer(stubber: Stubber, operation: str, value: Any, response: dict, expected: Optional[dict] = None) -> None:
    if isinstance(value, ApiError):
        stubber.add_client_error(operation, service_error_code=value.code, service_message=value.message,
                                 http_status_code=value.status, expected_params=expected)
    else:
        stubber.add_response(operation, response, expected)


def _stubbed_clients(acct: Account) -> dict:
    backup, ec2, rbin, s3 = acct.client("backup"), acct.client("ec2"), acct.client("rbin"), acct.client("s3")
    # The emulator evaluates bucket policies, and a TLS-only one denies its plain-HTTP endpoint everything:
    # the policy is answered here, every other S3 call reaches the emulator.
    p = PartialStubber(s3, {"GetBucketPolicy"})
    if acct.bucket_policy is None:
        p.add_client_error("get_bucket_policy", "NoSuchBucketPolicy", "The bucket policy does not exist", 404)
    else:
        p.add_response("get_bucket_policy", {"Policy": json.dumps(acct.bucket_policy)}, {"Bucket": BUCKET})
    b = PartialStubber(backup, {"ListRecoveryPointsByBackupVault", "GetBackupVaultAccessPolicy"})
    _answer(b, "list_recovery_points_by_backup_vault", acct.recovery_points,
            {"RecoveryPoints": acct.recovery_points if isinstance(acct.recovery_points, list) else []},
            {"BackupVaultName": VAULT, "ByResourceArn": acct.instance_arn()})
    if isinstance(acct.vault_policy, ApiError):
        _answer(b, "get_backup_vault_access_policy", acct.vault_policy, {}, {"BackupVaultName": VAULT})
    elif acct.vault_policy is not None:
        b.add_response("get_backup_vault_access_policy",
                       {"BackupVaultName": VAULT, "Policy": json.dumps(acct.vault_policy)}, {"BackupVaultName": VAULT})
    else:
        b.add_client_error("get_backup_vault_access_policy", "ResourceNotFoundException",
                           "Backup vault access policy not found", 404)

    r = Stubber(rbin)
    for resource_type, rules in (("EBS_SNAPSHOT", acct.rbin_rules), ("EC2_IMAGE", acct.image_rules)):
        if isinstance(rules, ApiError):
            _answer(r, "list_rules", rules, {}, {"ResourceType": resource_type})
            continue
        r.add_response("list_rules", {"Rules": [
            {k: rule[k] for k in ("Identifier", "RetentionPeriod", "LockState", "RuleArn") if k in rule}
            for rule in rules]}, {"ResourceType": resource_type})
        for rule in rules:
            r.add_response("get_rule", rule, {"Identifier": rule["Identifier"]})

    e = PartialStubber(ec2, {"DescribeLockedSnapshots", "GetSnapshotBlockPublicAccessState"})
    _answer(e, "describe_locked_snapshots", acct.locks,
            {"Snapshots": acct.locks if isinstance(acct.locks, list) else []}, {"SnapshotIds": ANY})
    _answer(e, "get_snapshot_block_public_access_state", acct.block_public_access,
            {"State": acct.block_public_access, "ManagedBy": "account"}, {})
    for s in (b, r, e, p):
        s.activate()
    acct.stubbers = [b, r, e, p]
    return {"backup": backup, "ec2": ec2, "rbin": rbin, "s3": s3}


def run_audit(acct: Account, *extra: str) -> tuple[int, dict]:
    result = acct.backupctl("audit", "--json", "--config-file", str(acct.config_file),
                            "--log-file", str(acct.log_file), *extra, clients=_stubbed_clients(acct))
    return result.code, result.json()


def status_of(doc: dict, name: str) -> dict:
    return next(c for c in doc["checks"] if c["name"] == name)


def audit_check(acct: Account, name: str, *extra: str) -> dict:
    """Run the audit; the result of the check named `name`."""
    _, doc = run_audit(acct, *extra)
    return status_of(doc, name)


# --- the whole audit ----------------------------------------------------------------------------

def test_compliant_account_passes_every_check_and_exits_0(account):
    rc, doc = run_audit(account)
    assert [c for c in doc["checks"] if c["status"] != "ok"] == []
    assert doc["ok"] is True and rc == 0
    for s in account.stubbers:
        s.assert_no_pending_responses()


def test_any_failed_check_makes_audit_exit_1(account):
    account.block_public_access = "unblocked"
    rc, doc = run_audit(account)
    assert rc == 1 and doc["ok"] is False


def test_audit_text_output_is_a_table_with_one_line_per_check(account, backupctl):
    result = backupctl("audit", "--config-file", str(account.config_file), "--log-file", str(account.log_file),
                       clients=_stubbed_clients(account))
    out = result.out
    assert result.code == 0
    assert any(line.startswith("ok") and "vault-lock" in line for line in out.splitlines())
    assert "all checks ok" in out


def test_audit_appends_its_result_to_the_operations_log(account):
    account.rbin_rules = []
    run_audit(account)
    record = json.loads(account.log_file.read_text().splitlines()[-1])
    assert record["command"] == "audit" and record["ok"] is False and record["not_ok"] == ["recycle-bin"]


def test_bad_max_age_hours_exits_2_naming_the_flag(account, backupctl):
    result = backupctl("audit", "--config-file", str(account.config_file), "--max-age-hours", "soon")
    assert result.code == 2 and "--max-age-hours" in result.err


def test_bad_stack_config_exits_2_before_any_aws_call(account, tmp_path, backupctl):
    bad = tmp_path / "bad.yaml"
    bad.write_text(account.config_file.read_text().replace("retentionDays: 7", "retentionDays: seven", 1))
    result = backupctl("audit", "--config-file", str(bad), clients=_stubbed_clients(account))
    assert result.code == 2 and "retentionDays" in result.err


# --- recovery point -----------------------------------------------------------------------------

def test_recovery_point_younger_than_26h_is_ok(account):
    assert audit_check(account, "recovery-point")["status"] == "ok"


def test_recovery_point_older_than_26h_fails(account):
    account.recovery_points = [_recovery_point(account, 30)]
    check = audit_check(account, "recovery-point")
    assert check["status"] == "FAIL" and "30.0 h" in check["detail"]


def test_only_a_failed_recent_recovery_point_fails(account):
    account.recovery_points = [_recovery_point(account, 1, status="PARTIAL")]
    assert audit_check(account, "recovery-point")["status"] == "FAIL"


def test_recovery_point_max_age_is_configurable(account):
    account.recovery_points = [_recovery_point(account, 30)]
    assert audit_check(account, "recovery-point", "--max-age-hours", "48")["status"] == "ok"


def test_recovery_points_access_denied_is_could_not_check_with_the_reason(account):
    account.recovery_points = ApiError("AccessDeniedException", "not authorized", 403)
    rc, doc = run_audit(account)
    check = status_of(doc, "recovery-point")
    assert check["status"] == "could-not-check" and "AccessDeniedException" in check["detail"]
    assert rc == 1


# --- backup plan --------------------------------------------------------------------------------

def test_backup_plan_with_7_day_daily_rule_is_ok(account):
    assert audit_check(account, "backup-plan")["status"] == "ok"


@pytest.mark.parametrize("plan_rule", [{"ScheduleExpression": "cron(0 20 * * ? *)",
                                        "Lifecycle": {"DeleteAfterDays": 3}}])
def test_backup_plan_keeping_3_days_fails(account):
    check = audit_check(account, "backup-plan")
    assert check["status"] == "FAIL" and "3 days" in check["detail"] and "at least 7" in check["detail"]


@pytest.mark.parametrize("plan_rule", [{"ScheduleExpression": "cron(0 20 ? * SUN *)",
                                        "Lifecycle": {"DeleteAfterDays": 7}}])
def test_weekly_backup_plan_fails(account):
    check = audit_check(account, "backup-plan")
    assert check["status"] == "FAIL" and "does not run every day" in check["detail"]


@pytest.mark.parametrize("plan_rule", [None])
def test_missing_backup_plan_fails(account):
    assert audit_check(account, "backup-plan") == {"name": "backup-plan", "status": "FAIL",
                                             "detail": f"no backup plan named {PLAN}"}


@pytest.mark.parametrize("expression, daily", [
    ("cron(0 20 * * ? *)", True), ("cron(0 */6 ? * * *)", True), ("cron(0 20 ? * MON-FRI *)", False),
    ("cron(0 20 1 * ? *)", False), ("rate(12 hours)", True), ("rate(2 days)", False), ("", False)])
def test_schedule_runs_at_least_daily_only_when_it_fires_every_day(expression, daily):
    assert runs_at_least_daily(expression) is daily


# --- vault lock ---------------------------------------------------------------------------------

def test_locked_vault_with_7_day_minimum_is_ok(account):
    assert audit_check(account, "vault-lock")["status"] == "ok"


def test_vault_without_lock_fails(account):
    account.client("backup").delete_backup_vault_lock_configuration(BackupVaultName=VAULT)
    check = audit_check(account, "vault-lock")
    assert check["status"] == "FAIL" and "no vault lock" in check["detail"]


def test_vault_lock_with_short_minimum_fails(account):
    backup = account.client("backup")
    backup.delete_backup_vault_lock_configuration(BackupVaultName=VAULT)
    backup.put_backup_vault_lock_configuration(BackupVaultName=VAULT, MinRetentionDays=1, MaxRetentionDays=35)
    check = audit_check(account, "vault-lock")
    assert check["status"] == "FAIL" and "MinRetentionDays is 1" in check["detail"]


def test_missing_vault_fails_rather_than_could_not_check(account):
    backup = account.client("backup")
    backup.delete_backup_vault_lock_configuration(BackupVaultName=VAULT)
    backup.delete_backup_vault(BackupVaultName=VAULT)
    assert audit_check(account, "vault-lock")["status"] == "FAIL"


# --- vault access policy ------------------------------------------------------------------------

def test_vault_policy_denying_deletion_to_everyone_is_ok(account):
    assert audit_check(account, "vault-access-policy")["status"] == "ok"


def test_vault_without_access_policy_fails(account):
    account.vault_policy = None
    check = audit_check(account, "vault-access-policy")
    assert check["status"] == "FAIL" and "no access policy" in check["detail"]


def test_vault_policy_denying_only_to_one_role_fails(account):
    policy = _good_policy()
    policy["Statement"][0]["Principal"] = {"AWS": f"arn:aws:iam::{ACCOUNT}:role/intern"}
    account.vault_policy = policy
    check = audit_check(account, "vault-access-policy")
    assert check["status"] == "FAIL" and "backup:DeleteRecoveryPoint" in check["detail"]


def test_vault_policy_with_a_condition_fails(account):
    policy = _good_policy()
    policy["Statement"][0]["Condition"] = {"StringEquals": {"aws:PrincipalTag/team": "dev"}}
    account.vault_policy = policy
    assert audit_check(account, "vault-access-policy")["status"] == "FAIL"


def test_vault_policy_denying_backup_wildcard_is_ok(account):
    policy = _good_policy()
    policy["Statement"][0]["Action"] = "backup:*"
    account.vault_policy = policy
    assert audit_check(account, "vault-access-policy")["status"] == "ok"


def test_vault_policy_denying_on_one_recovery_point_only_fails(account):
    policy = _good_policy()
    policy["Statement"][0]["Resource"] = f"arn:aws:ec2:{REGION}::image/ami-0123456789abcdef0"
    account.vault_policy = policy
    assert audit_check(account, "vault-access-policy")["status"] == "FAIL"


def test_vault_policy_on_the_vault_arn_is_ok(account):
    policy = _good_policy()
    policy["Statement"][0]["Resource"] = f"arn:aws:backup:{REGION}:{ACCOUNT}:backup-vault:{VAULT}"
    account.vault_policy = policy
    assert audit_check(account, "vault-access-policy")["status"] == "ok"


def test_vault_policy_access_denied_is_could_not_check(account):
    account.vault_policy = ApiError("AccessDeniedException", "no backup:GetBackupVaultAccessPolicy", 403)
    assert audit_check(account, "vault-access-policy")["status"] == "could-not-check"


# --- recycle bin --------------------------------------------------------------------------------

def test_locked_region_level_recycle_bin_rule_is_ok(account):
    assert audit_check(account, "recycle-bin")["status"] == "ok"


def test_no_recycle_bin_rule_fails(account):
    account.rbin_rules = []
    assert audit_check(account, "recycle-bin")["status"] == "FAIL"


def test_unlocked_recycle_bin_rule_fails(account):
    account.rbin_rules = [_rbin_rule(lock_state=None)]
    check = audit_check(account, "recycle-bin")
    assert check["status"] == "FAIL" and "must be locked" in check["detail"]


def test_pending_unlock_recycle_bin_rule_fails(account):
    account.rbin_rules = [_rbin_rule(lock_state="pending_unlock")]
    assert audit_check(account, "recycle-bin")["status"] == "FAIL"


def test_recycle_bin_rule_keeping_3_days_fails(account):
    account.rbin_rules = [_rbin_rule(retention_days=3)]
    check = audit_check(account, "recycle-bin")
    assert check["status"] == "FAIL" and "retains 3 days" in check["detail"]


def test_tag_level_recycle_bin_rule_fails(account):
    account.rbin_rules = [_rbin_rule(lock_state=None, tags=[{"ResourceTagKey": "Strategy",
                                                            "ResourceTagValue": "quickport-backup"}])]
    check = audit_check(account, "recycle-bin")
    assert check["status"] == "FAIL" and "tag-level" in check["detail"]


def test_recycle_bin_api_error_is_could_not_check(account):
    account.rbin_rules = ApiError("AccessDeniedException", "no rbin:ListRules", 403)
    check = audit_check(account, "recycle-bin")
    assert check["status"] == "could-not-check" and "rbin:ListRules" in check["detail"]


# --- baselines ----------------------------------------------------------------------------------

def test_completed_locked_baseline_is_ok(account):
    assert audit_check(account, f"baseline {BASELINE}")["status"] == "ok"


def test_missing_baseline_snapshot_fails(account):
    account.client("ec2").delete_snapshot(SnapshotId=account.baseline_snapshot_id)
    account.locks = []
    check = audit_check(account, f"baseline {BASELINE}")
    assert check["status"] == "FAIL" and "no snapshot" in check["detail"]


def test_unlocked_baseline_fails(account):
    account.locks = []
    check = audit_check(account, f"baseline {BASELINE}")
    assert check["status"] == "FAIL" and "not locked" in check["detail"]


def test_baseline_with_expired_lock_fails(account):
    account.locks = [_lock(account.baseline_snapshot_id, state="expired", days_left=-1)]
    assert audit_check(account, f"baseline {BASELINE}")["status"] == "FAIL"


def test_baseline_of_another_volume_fails(account):
    ec2 = account.client("ec2")
    other = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=8)["VolumeId"]
    ec2.delete_snapshot(SnapshotId=account.baseline_snapshot_id)
    ec2.create_snapshot(VolumeId=other, TagSpecifications=[{"ResourceType": "snapshot", "Tags": [
        {"Key": "Name", "Value": BASELINE}]}])
    account.locks = []
    check = audit_check(account, f"baseline {BASELINE}")
    assert check["status"] == "FAIL" and other in check["detail"]


def test_baseline_lock_api_unavailable_is_could_not_check(account):
    account.locks = ApiError("InvalidAction", "The action DescribeLockedSnapshots is not valid", 400)
    check = audit_check(account, f"baseline {BASELINE}")
    assert check["status"] == "could-not-check"
    assert account.baseline_snapshot_id in check["detail"] and "InvalidAction" in check["detail"]


# --- snapshot block public access ---------------------------------------------------------------

def test_block_all_sharing_is_ok(account):
    assert audit_check(account, "snapshot-block-public-access")["status"] == "ok"


def test_block_new_sharing_only_fails(account):
    account.block_public_access = "block-new-sharing"
    check = audit_check(account, "snapshot-block-public-access")
    assert check["status"] == "FAIL" and "block-new-sharing" in check["detail"]


def test_block_public_access_api_error_is_could_not_check(account):
    account.block_public_access = ApiError("UnauthorizedOperation", "not authorized", 403)
    assert audit_check(account, "snapshot-block-public-access")["status"] == "could-not-check"


# --- dumps --------------------------------------------------------------------------------------

def test_dump_finished_2h_ago_is_ok(account):
    assert audit_check(account, "dump-fresh")["status"] == "ok"


def test_dump_finished_30h_ago_fails(account):
    _write_dump(account.client("s3"), age_hours=30)
    check = audit_check(account, "dump-fresh")
    assert check["status"] == "FAIL" and "30.0 h" in check["detail"]


def test_without_latest_json_the_newest_manifest_counts(account):
    account.client("s3").delete_object(Bucket=BUCKET, Key=f"mysql/{DB}/latest.json")
    check = audit_check(account, "dump-fresh")
    assert check["status"] == "ok" and check["detail"].endswith("ago") and ".manifest.json" in check["detail"]


def test_no_dump_at_all_fails(account):
    s3 = account.client("s3")
    for version in s3.list_object_versions(Bucket=BUCKET).get("Versions", []):
        # Object Lock (governance) holds them: only s3:BypassGovernanceRetention gets them out.
        s3.delete_object(Bucket=BUCKET, Key=version["Key"], VersionId=version["VersionId"],
                         BypassGovernanceRetention=True)
    check = audit_check(account, "dump-fresh")
    assert check["status"] == "FAIL" and "no dump manifest" in check["detail"]


def test_latest_json_pointing_at_a_missing_manifest_fails(account):
    account.client("s3").put_object(Bucket=BUCKET, Key=f"mysql/{DB}/latest.json",
                             Body=json.dumps({"manifest": f"mysql/{DB}/gone.manifest.json"}).encode())
    assert audit_check(account, "dump-fresh")["status"] == "FAIL"


def test_versioned_bucket_is_ok(account):
    assert audit_check(account, "dump-bucket-versioning")["status"] == "ok"


def test_suspended_versioning_fails(account):
    account.client("s3").put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})
    check = audit_check(account, "dump-bucket-versioning")
    assert check["status"] == "FAIL" and "Suspended" in check["detail"]


def test_missing_dump_bucket_fails_every_bucket_check(account):
    s3 = account.client("s3")
    for version in s3.list_object_versions(Bucket=BUCKET).get("Versions", []):
        # Object Lock (governance) holds them: only s3:BypassGovernanceRetention gets them out.
        s3.delete_object(Bucket=BUCKET, Key=version["Key"], VersionId=version["VersionId"],
                         BypassGovernanceRetention=True)
    s3.delete_bucket(Bucket=BUCKET)
    _, doc = run_audit(account)
    assert {status_of(doc, n)["status"] for n in ("dump-fresh", "dump-bucket-versioning",
                                                   "dump-bucket-public-access", "dump-bucket-encryption")} == {"FAIL"}


def test_full_public_access_block_is_ok(account):
    assert audit_check(account, "dump-bucket-public-access")["status"] == "ok"


def test_partial_public_access_block_fails_naming_the_flag(account):
    account.client("s3").put_public_access_block(Bucket=BUCKET, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": False, "RestrictPublicBuckets": True})
    check = audit_check(account, "dump-bucket-public-access")
    assert check["status"] == "FAIL" and "BlockPublicPolicy" in check["detail"]


def test_no_public_access_block_fails(account):
    account.client("s3").delete_public_access_block(Bucket=BUCKET)
    assert audit_check(account, "dump-bucket-public-access")["status"] == "FAIL"


def test_sse_kms_bucket_is_ok(account):
    [rule] = account.client("s3").get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    key = rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"]
    check = audit_check(account, "dump-bucket-encryption")
    assert check["status"] == "ok" and key in check["detail"]


def test_sse_s3_bucket_fails(account):
    account.client("s3").put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    check = audit_check(account, "dump-bucket-encryption")
    assert check["status"] == "FAIL" and "AES256" in check["detail"]


# --- the dead-man's switch alarms -----------------------------------------------------------------

def test_alarms_all_quiet_are_ok(account):
    check = audit_check(account, "alarms")
    assert check["status"] == "ok" and "quickport-prod-dump-missing" in check["detail"]


def test_an_alarm_in_alarm_fails_the_audit_naming_it_and_its_reason(account):
    account.client("cloudwatch").set_alarm_state(AlarmName="quickport-prod-dump-missing", StateValue="ALARM",
                                                 StateReason="Threshold Crossed: 26 datapoints were less than 1")
    rc, doc = run_audit(account)
    check = status_of(doc, "alarms")
    assert rc == 1 and check["status"] == "FAIL"
    assert check["detail"].startswith("quickport-prod-dump-missing in ALARM since ")
    assert "Threshold Crossed: 26 datapoints were less than 1" in check["detail"]


def test_a_deleted_alarm_fails_the_audit(account):
    account.client("cloudwatch").delete_alarms(AlarmNames=["quickport-prod-backup-job-missing"])
    check = audit_check(account, "alarms")
    assert check == {"name": "alarms", "status": "FAIL", "detail": "quickport-prod-backup-job-missing does not exist"}


def test_a_missing_binlog_alarm_fails_the_audit_while_binlog_shipping_is_enabled(account):
    account.client("cloudwatch").delete_alarms(AlarmNames=["quickport-prod-binlog-lag"])
    check = audit_check(account, "alarms")
    assert check == {"name": "alarms", "status": "FAIL", "detail": "quickport-prod-binlog-lag does not exist"}


def test_an_alarm_not_evaluated_yet_is_could_not_check(account):
    account.client("cloudwatch").set_alarm_state(AlarmName="quickport-prod-backup-job-missing",
                                                 StateValue="INSUFFICIENT_DATA", StateReason="new")
    assert audit_check(account, "alarms")["status"] == "could-not-check"


def test_a_stopped_trail_fails_the_api_call_trail_check(account):
    account.client("cloudtrail").stop_logging(Name="quickport-prod-management-events")
    check = audit_check(account, "api-call-trail")
    assert check["status"] == "FAIL" and "trail quickport-prod-management-events is stopped" in check["detail"]


def test_a_logging_trail_is_ok(account):
    assert audit_check(account, "api-call-trail") == {
        "name": "api-call-trail", "status": "ok", "detail": "logging: quickport-prod-management-events"}


# --- Recycle Bin: both rules -----------------------------------------------------------------------

def test_unlocked_image_rule_fails_recycle_bin_images(account):
    account.image_rules = [_rbin_rule(lock_state=None, resource_type="EC2_IMAGE")]
    rc, doc = run_audit(account)
    check = status_of(doc, "recycle-bin-images")
    assert rc == 1 and check["status"] == "FAIL" and "never locked, must be locked" in check["detail"]
    assert status_of(doc, "recycle-bin")["status"] == "ok"


def test_no_image_rule_fails_recycle_bin_images(account):
    account.image_rules = []
    assert audit_check(account, "recycle-bin-images") == {
        "name": "recycle-bin-images", "status": "FAIL", "detail": "no Recycle Bin retention rule for EC2_IMAGE"}


def test_rule_with_exclusion_tags_fails(account):
    account.rbin_rules = [_rbin_rule(lock_state=None)]
    account.rbin_rules[0]["ExcludeResourceTags"] = [{"ResourceTagKey": "keep", "ResourceTagValue": "no"}]
    assert "excludes tagged snapshots" in audit_check(account, "recycle-bin")["detail"]


# --- vault policy and lock mode --------------------------------------------------------------------

def test_vault_policy_without_the_put_policy_deny_fails(account):
    policy = _good_policy()
    policy["Statement"][0]["Action"] = ["backup:DeleteRecoveryPoint", "backup:UpdateRecoveryPointLifecycle"]
    account.vault_policy = policy
    check = audit_check(account, "vault-access-policy")
    assert check["status"] == "FAIL" and check["detail"].endswith(
        "policy does not deny backup:PutBackupVaultAccessPolicy to every principal without conditions")


def test_vault_lock_in_governance_when_the_config_says_compliance_fails(account):
    account.prod.write_config(account.config_file, backup={
        **account.prod.stack_config()["config"]["quickport-backup:backup"],
        "vaultLock": {"mode": "compliance", "minRetentionDays": 7, "maxRetentionDays": 35, "changeableForDays": 3}})
    check = audit_check(account, "vault-lock")
    assert check == {"name": "vault-lock", "status": "FAIL", "detail": "vault quickport-prod-vault lock is governance "
                                                                       "mode (no LockDate); backup.vaultLock.mode is "
                                                                       "compliance"}


# --- the dump bucket: Object Lock, policy, lifecycle -----------------------------------------------

def test_object_locked_bucket_is_ok(account):
    assert audit_check(account, "dump-bucket-object-lock")["detail"] == "every new version locked: governance, 30 days"


def test_bucket_without_object_lock_fails(account):
    unlocked = "qp-unlocked-dumps"
    standin.build_dump_bucket(REGION, unlocked, hardened=False)
    account.prod.write_config(account.config_file, dumps={
        **account.prod.stack_config()["config"]["quickport-backup:dumps"], "bucketName": unlocked})
    check = audit_check(account, "dump-bucket-object-lock")
    assert check["status"] == "FAIL" and check["detail"].startswith(f"S3 Object Lock is off on {unlocked}")


@pytest.mark.parametrize("lock, expected", [
    ({"mode": "compliance", "days": 30}, "default retention governance 30 days; dumps.objectLock is compliance 30"),
    ({"mode": "governance", "days": 45}, "default retention governance 30 days; dumps.objectLock is governance 45"),
])
def test_object_lock_weaker_than_the_config_fails(account, lock, expected):
    account.prod.write_config(account.config_file, dumps={
        **account.prod.stack_config()["config"]["quickport-backup:dumps"], "objectLock": lock})
    check = audit_check(account, "dump-bucket-object-lock")
    assert check["status"] == "FAIL" and check["detail"].startswith(expected)


def test_the_stacks_bucket_policy_is_ok(account):
    assert audit_check(account, "dump-bucket-policy")["status"] == "ok"


def test_no_bucket_policy_fails(account):
    account.bucket_policy = None
    assert audit_check(account, "dump-bucket-policy")["status"] == "FAIL"


@pytest.mark.parametrize("sid, missing", [
    ("DenyInsecureTransport", "TLS-only"), ("DenyObjectVersionDeletion", "Deny s3:DeleteObjectVersion"),
    ("DenyPolicyChangesExceptByRoot", "Deny s3:PutBucketPolicy, s3:DeleteBucketPolicy")])
def test_bucket_policy_missing_a_statement_fails_naming_it(account, sid, missing):
    account.bucket_policy["Statement"] = [s for s in account.bucket_policy["Statement"] if s["Sid"] != sid]
    check = audit_check(account, "dump-bucket-policy")
    assert check["status"] == "FAIL" and missing in check["detail"]


def test_tls_deny_of_only_some_actions_is_not_tls_only(account):
    [tls] = [s for s in account.bucket_policy["Statement"] if s["Sid"] == "DenyInsecureTransport"]
    tls["Action"] = "s3:GetObject"
    assert "TLS-only" in audit_check(account, "dump-bucket-policy")["detail"]


def test_the_stacks_lifecycle_is_ok(account):
    assert audit_check(account, "dump-bucket-lifecycle")["status"] == "ok"


def _lifecycle(account, *rules):
    account.client("s3").put_bucket_lifecycle_configuration(Bucket=BUCKET,
                                                            LifecycleConfiguration={"Rules": list(rules)})


def test_lifecycle_without_the_bucket_wide_abort_rule_fails(account):
    _lifecycle(account, *({"ID": f"expire-{p}", "Status": "Enabled", "Filter": {"Prefix": f"{p}/"},
                           "Expiration": {"Days": 30},
                           "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}} for p in ("mysql", "files")))
    check = audit_check(account, "dump-bucket-lifecycle")
    assert check["status"] == "FAIL" and "no bucket-wide rule aborting incomplete multipart uploads" in check["detail"]


def test_lifecycle_expiring_dumps_early_fails(account):
    _lifecycle(account, {"ID": "abort", "Status": "Enabled", "Filter": {},
                         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
               {"ID": "expire-mysql", "Status": "Enabled", "Filter": {"Prefix": "mysql/"}, "Expiration": {"Days": 3}},
               {"ID": "expire-files", "Status": "Enabled", "Filter": {"Prefix": "files/"}, "Expiration": {"Days": 30},
                "NoncurrentVersionExpiration": {"NoncurrentDays": 1}})
    detail = audit_check(account, "dump-bucket-lifecycle")["detail"]
    assert "rule expire-mysql expires objects after 3 days (< 7)" in detail
    assert "rule expire-files expires old versions after 1 days (< 7)" in detail


def test_lifecycle_missing_the_files_rule_fails(account):
    _lifecycle(account, {"ID": "abort", "Status": "Enabled", "Filter": {},
                         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
               {"ID": "expire-mysql", "Status": "Enabled", "Filter": {"Prefix": "mysql/"}, "Expiration": {"Days": 30}})
    assert "no rule expiring files/" in audit_check(account, "dump-bucket-lifecycle")["detail"]


def _binlog_lifecycle(account, binlog_rule: Optional[dict], *extra: dict):
    _lifecycle(account, {"ID": "abort", "Status": "Enabled", "Filter": {},
                         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
               *({"ID": f"expire-{p}", "Status": "Enabled", "Filter": {"Prefix": f"{p}/"}, "Expiration": {"Days": 30},
                  "NoncurrentVersionExpiration": {"NoncurrentDays": 7}} for p in ("mysql", "files")),
               *([binlog_rule] if binlog_rule else []), *extra)


def _binlog_rule(days: int) -> dict:
    return {"ID": "expire-binlog", "Status": "Enabled", "Filter": {"Prefix": "binlog/"}, "Expiration": {"Days": days},
            "NoncurrentVersionExpiration": {"NoncurrentDays": 7}}


def test_lifecycle_expiring_binlog_segments_before_the_binlog_retention_fails(account):
    _binlog_lifecycle(account, _binlog_rule(20))
    check = audit_check(account, "dump-bucket-lifecycle")
    assert check == {"name": "dump-bucket-lifecycle", "status": "FAIL",
                     "detail": "rule expire-binlog expires binlog/ segments after 20 days; binlog.retentionDays is 37"}


def test_lifecycle_without_a_binlog_rule_fails(account):
    _binlog_lifecycle(account, None)
    assert audit_check(account, "dump-bucket-lifecycle")["detail"] == \
        "no rule expiring binlog/ (binlog.retentionDays is 37)"


def test_a_bucket_wide_expiry_reaching_the_binlog_prefix_fails(account):
    _binlog_lifecycle(account, _binlog_rule(37), {"ID": "everything", "Status": "Enabled", "Filter": {},
                                                  "Expiration": {"Days": 31}})
    detail = audit_check(account, "dump-bucket-lifecycle")["detail"]
    assert "rule everything expires binlog/ segments after 31 days; binlog.retentionDays is 37" in detail


def test_the_binlog_rule_is_ok_and_named_in_the_lifecycle_detail(account):
    check = audit_check(account, "dump-bucket-lifecycle")
    assert check["status"] == "ok" and check["detail"].endswith("binlog/ segments kept >= 37 days")


def _binlog_config(account, **changes):
    """Rewrite the account's stack config with quickport-backup:binlog changed."""
    doc = yaml.safe_load(account.config_file.read_text())
    doc["config"]["quickport-backup:binlog"].update(changes)
    account.config_file.write_text(yaml.safe_dump(doc))


def test_without_binlog_shipping_the_binlog_rule_and_both_pitr_checks_are_skipped(account):
    _binlog_config(account, enabled=False)
    _binlog_lifecycle(account, None)
    _drop_binlog(account.client("s3"))
    account.client("cloudwatch").delete_alarms(AlarmNames=[f"quickport-prod-binlog-{k}"
                                                           for k in ("lag", "silent", "chain-broken")])
    rc, doc = run_audit(account)
    assert status_of(doc, "binlog-shipping") == {"name": "binlog-shipping", "status": "ok",
                                                 "detail": "skipped: binlog.enabled is false"}
    assert status_of(doc, "pitr-window") == {"name": "pitr-window", "status": "ok",
                                             "detail": "skipped: binlog.enabled is false"}
    assert rc == 0, [c for c in doc["checks"] if c["status"] != "ok"]


# --- point-in-time recovery: binlog-shipping ----------------------------------------------------

SHIPPING_OK = re.compile(
    r"chain \d{8}T\d{6}Z-s1: confirmed \d+ s ago \(threshold 180 s = 4 x 30 s interval \+ 60 s\), 3 segments, "
    r"last mariadb-bin\.000013; latest dump starts at mariadb-bin\.000012:1234, no gap since it$")


def test_a_recently_confirmed_chain_holding_the_latest_dump_is_ok(account):
    check = audit_check(account, "binlog-shipping")
    assert check["status"] == "ok" and SHIPPING_OK.match(check["detail"]), check["detail"]


def test_an_idle_database_is_not_stale_while_the_shipper_confirms(account):
    # Newest segment event 3 h old, but confirmed_at 5 s ago: nothing to ship is not falling behind.
    _write_chain(account.client("s3"), started_hours=20, segments=((12, 3),), confirmed=13)
    assert audit_check(account, "binlog-shipping")["status"] == "ok"


def test_a_chain_not_confirmed_for_ten_minutes_fails_with_the_threshold(account):
    _write_chain(account.client("s3"), started_hours=20, confirmed_seconds=600)
    check = audit_check(account, "binlog-shipping")
    assert check["status"] == "FAIL"
    assert re.search(r"last confirmed (59\d|60\d) s ago|last confirmed 10 min ago", check["detail"]), check["detail"]
    assert "(threshold 180 s = 4 x 30 s interval + 60 s): the shipper is behind or stopped" in check["detail"]


def test_the_staleness_threshold_follows_the_interval(account):
    _write_chain(account.client("s3"), started_hours=20, confirmed_seconds=150)
    assert audit_check(account, "binlog-shipping")["status"] == "ok"   # 150 s < 4 x 30 + 60
    _binlog_config(account, intervalSeconds=10, rpoBoundSeconds=60)
    check = audit_check(account, "binlog-shipping")
    assert check["status"] == "FAIL" and "(threshold 100 s = 4 x 10 s interval + 60 s)" in check["detail"]


def test_no_chain_at_all_fails(account):
    _drop_binlog(account.client("s3"))
    check = audit_check(account, "binlog-shipping")
    assert check == {"name": "binlog-shipping", "status": "FAIL", "detail": (
        f"no binlog chain under s3://{BUCKET}/binlog/: nothing was ever shipped (is the quickport-binlog service "
        "running on the instance?)")}


def test_a_gap_after_the_latest_dump_fails_naming_it(account):
    s3 = account.client("s3")
    chain = s3api_chain_id(s3)
    _write_gap(s3, chain, hours=1)
    check = audit_check(account, "binlog-shipping")
    assert check["status"] == "FAIL"
    assert re.search(rf"gap recorded at \S+Z in chain {chain} \(purged before shipped, missing from "
                     r"mariadb-bin\.000013\) after the latest dump: no restore past \S+Z until the next dump",
                     check["detail"]), check["detail"]


def test_a_gap_before_the_latest_dump_is_history(account):
    s3 = account.client("s3")
    _write_gap(s3, "20261101T000000Z-s1", hours=5, reason="server id changed")
    assert audit_check(account, "binlog-shipping")["status"] == "ok"


@pytest.mark.parametrize("binlog, why", [
    (NO_FIELD, "records no binlog coordinates (written by a dump agent older than the coordinates; update the SSM "
               "document): point-in-time replay has no starting point"),
    (None, "has binlog: null (log_bin was OFF on the server when it was dumped): point-in-time replay has no "
           "starting point")])
def test_a_latest_dump_without_binlog_coordinates_fails_naming_why(account, binlog, why):
    manifest = _write_dump(account.client("s3"), age_hours=1, binlog=binlog)
    check = audit_check(account, "binlog-shipping")
    assert check["status"] == "FAIL"
    assert check["detail"] == f"latest dump {manifest['key']}.manifest.json {why}"


def test_a_latest_dump_whose_binlog_file_no_live_chain_holds_fails(account):
    manifest = _write_dump(account.client("s3"), age_hours=1, binlog={**COORDINATES, "file": "mariadb-bin.000031"})
    check = audit_check(account, "binlog-shipping")
    assert check["status"] == "FAIL" and check["detail"] == (
        f"latest dump {manifest['key']}.manifest.json starts at mariadb-bin.000031:1234 (server 1), "
        "which no live chain holds")


def test_a_chain_of_another_server_does_not_hold_the_dump(account):
    _write_dump(account.client("s3"), age_hours=1, binlog={**COORDINATES, "server_id": 2})
    assert "(server 2), which no live chain holds" in audit_check(account, "binlog-shipping")["detail"]


def test_a_closed_newest_chain_fails(account):
    _write_chain(account.client("s3"), started_hours=10, closed={"at": _ago(minutes=30), "reason": "server id changed"})
    check = audit_check(account, "binlog-shipping")
    assert check["status"] == "FAIL"
    assert re.search(r"newest chain \S+-s1 was closed at \S+Z \(server id changed\) and no chain follows it",
                     check["detail"]), check["detail"]


# --- point-in-time recovery: the paged index ----------------------------------------------------

SIX_SEGMENTS = ((11, 20), (12, 10), (13, 5), (14, 3), (15, 1.5), (16, 0.2))


def _paged_chain(account, **changes: Any) -> str:
    """Only a chain of six segments in pages of two (pages 0 and 1, the head holding 15 and 16), confirmed
    at 17, and a dump 26 h old at the chain's first file."""
    s3 = account.client("s3")
    _drop_binlog(s3)
    chain = _write_chain(s3, started_hours=28, segments=SIX_SEGMENTS, confirmed=17, page_segments=2, **changes)
    _write_dump(s3, age_hours=26, binlog={**COORDINATES, "file": "mariadb-bin.000011"}, latest=False)
    return chain


def test_a_chain_in_pages_is_read_whole_by_both_checks(account):
    _paged_chain(account)
    _, doc = run_audit(account)
    shipping, window = status_of(doc, "binlog-shipping"), status_of(doc, "pitr-window")
    assert shipping["status"] == "ok" and "6 segments, last mariadb-bin.000016;" in shipping["detail"], shipping
    # From the dump at 000011 (page 0) through the pages to the confirmed point: one window.
    assert window["status"] == "ok" and abs(_hours_ago(window["data"]["earliest"]) - 26) < 0.01
    assert _hours_ago(window["data"]["latest"]) * 3600 < 60 and len(window["data"]["windows"]) == 1


def test_a_head_of_the_agent_before_paging_is_read_as_before(account):
    s3 = account.client("s3")
    _drop_binlog(s3)
    _write_chain(s3, index_format=1)
    check = audit_check(account, "binlog-shipping")
    assert check["status"] == "ok" and SHIPPING_OK.match(check["detail"]), check["detail"]


def test_a_missing_page_fails_both_checks_naming_its_key(account):
    chain = _paged_chain(account)
    account.client("s3").delete_object(Bucket=BUCKET, Key=_page_key(chain, 0))   # its segments stay
    _, doc = run_audit(account)
    detail = (f"s3://{BUCKET}/{_page_key(chain, 0)} is missing: page 0 of chain {chain}, counted by "
              f"binlog/{chain}/index.json, while its segments are still in the bucket")
    for name in ("binlog-shipping", "pitr-window"):
        assert status_of(doc, name) == {"name": name, "status": "FAIL", "detail": detail}


def test_a_page_of_another_chain_fails_naming_its_key(account):
    chain = _paged_chain(account)
    s3 = account.client("s3")
    page = json.loads(s3.get_object(Bucket=BUCKET, Key=_page_key(chain, 1))["Body"].read())
    s3.put_object(Bucket=BUCKET, Key=_page_key(chain, 1), Body=json.dumps({**page, "chain": "other"}).encode())
    check = audit_check(account, "binlog-shipping")
    assert check == {"name": "binlog-shipping", "status": "FAIL", "detail": (
        f"s3://{BUCKET}/{_page_key(chain, 1)} is not page 1 of chain {chain} (format "
        "'quickport-binlog-index-page/1', chain 'other', page 1)")}


def test_pages_expired_with_their_segments_are_history_not_a_failure(account):
    chain = _paged_chain(account)
    s3 = account.client("s3")
    # As the lifecycle rule leaves it: page 0 and its segments (older than the page) gone.
    segments = [f"binlog/{chain}/mariadb-bin.{n:06d}{suffix}" for n in (11, 12) for suffix in ("", ".json")]
    for key in (_page_key(chain, 0), *segments):
        s3.delete_object(Bucket=BUCKET, Key=key)
    _write_dump(s3, age_hours=4, binlog={**COORDINATES, "file": "mariadb-bin.000013"})
    _, doc = run_audit(account)
    shipping, window = status_of(doc, "binlog-shipping"), status_of(doc, "pitr-window")
    assert shipping["status"] == "ok" and "4 segments, last mariadb-bin.000016;" in shipping["detail"], shipping
    # The dump at 000011 has nothing left to replay from; the one at 000013 starts the window.
    assert window["status"] == "ok" and abs(_hours_ago(window["data"]["earliest"]) - 4) < 0.01, window
    assert _hours_ago(window["data"]["latest"]) * 3600 < 60


@pytest.mark.parametrize("expires_in_hours, readable", [(-2, True), (30, False)])
def test_a_missing_page_whose_last_segment_is_due_to_expire_is_history(account, expires_in_hours, readable):
    """S3 removes expired objects some hours late and in no set order: a page gone while its last
    segment is past its lifecycle expiry date (x-amz-expiration, which moto does not send) expired."""
    chain = _paged_chain(account)
    s3 = account.client("s3")
    s3.delete_object(Bucket=BUCKET, Key=_page_key(chain, 0))
    expiry = (_now() + dt.timedelta(hours=expires_in_hours)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    stub = PartialStubber(s3, {"HeadObject"})
    stub.add_response("head_object", {"ContentLength": 16,
                                      "Expiration": f'expiry-date="{expiry}", rule-id="expire-binlog"'},
                      {"Bucket": BUCKET, "Key": f"binlog/{chain}/mariadb-bin.000012"})
    with stub:
        if readable:
            index = read_chain_index(s3, BUCKET, "binlog", chain)
            assert index is not None and [e["file"][-2:] for e in index["segments"]] == ["13", "14", "15", "16"]
        else:
            with pytest.raises(IndexUnreadable, match=re.escape(f"{_page_key(chain, 0)} is missing")):
                read_chain_index(s3, BUCKET, "binlog", chain)
        stub.assert_no_pending_responses()


def _drop_binlog(s3) -> None:
    """Delete every current object under binlog/ (delete markers: Object Lock keeps the versions)."""
    for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix="binlog/").get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=obj["Key"])


def s3api_chain_id(s3) -> str:
    """The fixture's one chain id."""
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="binlog/").get("Contents", [])]
    return next(k.split("/")[1] for k in keys if k.endswith("/index.json"))


# --- point-in-time recovery: pitr-window --------------------------------------------------------

def _window(account) -> dict:
    _, doc = run_audit(account)
    return status_of(doc, "pitr-window")


def _hours_ago(stamp: str) -> float:
    return (_now() - dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds() / 3600


def test_the_window_runs_from_the_dump_to_the_shippers_last_confirmation(account):
    check = _window(account)
    assert check["status"] == "ok"
    assert re.fullmatch(r"restorable from \S+Z \(2\.0 h ago\) to \S+Z \(\d+ s ago\)", check["detail"]), \
        check["detail"]
    assert abs(_hours_ago(check["data"]["earliest"]) - 2) < 0.01
    assert _hours_ago(check["data"]["latest"]) * 3600 < 60
    assert check["data"]["windows"] == [{"from": check["data"]["earliest"], "to": check["data"]["latest"]}]


def test_the_window_reaches_back_to_the_oldest_covered_dump_with_coordinates(account):
    s3 = account.client("s3")
    _write_dump(s3, age_hours=26, binlog={**COORDINATES, "file": "mariadb-bin.000011"}, latest=False)
    _write_dump(s3, age_hours=50, binlog=NO_FIELD, latest=False)   # before the coordinates: no start point
    check = _window(account)
    assert check["status"] == "ok" and "(26.0 h ago)" in check["detail"]
    assert abs(_hours_ago(check["data"]["earliest"]) - 26) < 0.01


def test_a_hole_in_the_chain_ends_the_window_before_it(account):
    s3 = account.client("s3")
    _drop_binlog(s3)
    _write_chain(s3, started_hours=28, segments=((11, 20), (13, 0.2)), confirmed=14)   # 000012 never shipped
    _write_dump(s3, age_hours=26, binlog={**COORDINATES, "file": "mariadb-bin.000011"}, latest=False)
    check = _window(account)
    assert check["status"] == "ok"
    assert abs(_hours_ago(check["data"]["earliest"]) - 26) < 0.01
    assert abs(_hours_ago(check["data"]["latest"]) - 20) < 0.01   # 000011's last event; not past the hole


def test_a_gap_splits_the_window_in_two(account):
    s3 = account.client("s3")
    old = s3api_chain_id(s3)
    s3.put_object(Bucket=BUCKET, Key=f"binlog/{old}/index.json", Body=json.dumps({
        **json.loads(s3.get_object(Bucket=BUCKET, Key=f"binlog/{old}/index.json")["Body"].read()),
        "segments": [], "confirmed_file": None, "closed": {"at": _ago(hours=1.9), "reason": "purged before shipped"}
    }).encode())
    _write_chain(s3, started_hours=29, segments=((11, 20), (12, 1.95)), confirmed=None,
                 closed={"at": _ago(hours=1.9), "reason": "purged before shipped"})
    _write_dump(s3, age_hours=26, binlog={**COORDINATES, "file": "mariadb-bin.000011"}, latest=False)
    _write_chain(s3, started_hours=1, segments=((20, 0.5),), confirmed=21)
    _write_dump(s3, age_hours=0.75, binlog={**COORDINATES, "file": "mariadb-bin.000020"})
    check = _window(account)
    assert check["status"] == "ok" and " in 2 windows (" in check["detail"]
    first, second = check["data"]["windows"]
    assert abs(_hours_ago(first["from"]) - 26) < 0.01 and abs(_hours_ago(first["to"]) - 1.95) < 0.01
    assert abs(_hours_ago(second["from"]) - 0.75) < 0.01 and _hours_ago(second["to"]) * 3600 < 60


def test_no_dump_a_chain_holds_means_no_window_and_fails(account):
    s3 = account.client("s3")
    _write_dump(s3, age_hours=1, binlog={**COORDINATES, "file": "mariadb-bin.000031"})
    _drop_binlog(s3)
    _write_chain(s3, started_hours=0.5, segments=(), confirmed=40)
    check = _window(account)
    assert check["status"] == "FAIL" and check["data"] == {"earliest": None, "latest": None, "windows": []}
    assert check["detail"] == ("no point-in-time window: 2 dumps (2 with binlog coordinates), 1 chains, and no "
                               "chain holds a dump's binlog file")


def test_the_window_of_a_real_dump_starts_at_its_recorded_coordinates(account, binlog_server, tmp_path):
    """The real agent dumps a binlog server; its coordinates (as issue 12 records them, read here from
    SHOW MASTER STATUS right after the dump) start the window."""
    seed_database(binlog_server, DB)
    s3 = account.client("s3")
    _drop_binlog(s3)   # only the chain written below: the fixture's would cover its older dump
    manifest = quickport_dump.dump_database(database=DB, bucket=BUCKET, prefix="mysql", s3=s3,
                                            defaults_file=binlog_server.defaults_file("backup", BACKUP_PASSWORD,
                                                                                      tmp_path),
                                            progress=lambda _: None)
    [[file, position, *_]] = binlog_server.sql("SHOW MASTER STATUS;")
    server_id = int(binlog_server.sql("SELECT @@server_id;")[0][0])
    manifest["binlog"] = {"file": file, "position": int(position), "gtid": None, "server_id": server_id}
    quickport_dump.publish(s3, BUCKET, f"mysql/{DB}/latest.json", manifest)
    seq = int(file.rsplit(".", 1)[1])
    _write_chain(s3, started_hours=0.2, server_id=server_id, segments=(), confirmed=seq, confirmed_seconds=1)
    _, doc = run_audit(account)
    assert status_of(doc, "binlog-shipping")["status"] == "ok", status_of(doc, "binlog-shipping")
    window = status_of(doc, "pitr-window")
    assert window["status"] == "ok" and window["data"]["earliest"] == manifest["finished_at"]


# --- encryption ---------------------------------------------------------------------------------

def test_encrypted_root_volume_is_ok(account):
    assert audit_check(account, "root-volume-encryption")["status"] == "ok"


def test_unencrypted_root_volume_fails_with_the_migration_path(account):
    plain = standin.build_instance(cidr="10.30.0.0/16", name="unencrypted")
    check = audit_check(account, "root-volume-encryption", "--instance-id", plain.instance_id)
    assert check["status"] == "FAIL"
    assert check["detail"].startswith(f"root volume {plain.root_volume_id} is not encrypted")
    for step in ("aws ec2 copy-snapshot", "--encrypted", "backupctl restore-instance --snapshot COPY --method detach",
                 "downtime: the instance is stopped"):
        assert step in check["detail"], step


def test_air_gapped_copies_need_the_root_on_a_customer_managed_key(account, backupctl):
    account.prod.write_config(account.config_file, ebsEncryption={"defaultKmsKey": "stack"}, backup={
        **account.prod.stack_config()["config"]["quickport-backup:backup"],
        "airGappedVault": {"minRetentionDays": 7, "maxRetentionDays": 35}})
    kms = account.client("kms")
    with PartialStubber(kms, {"DescribeKey"}) as stub:
        stub.always("describe_key", {"KeyMetadata": {"KeyId": "aws-ebs", "KeyManager": "AWS"}})
        result = backupctl("audit", "--json", "--config-file", str(account.config_file), "--log-file",
                           str(account.log_file), clients={**_stubbed_clients(account), "kms": kms})
    check = status_of(result.json(), "root-volume-encryption")
    assert check["status"] == "FAIL" and "encrypted with the AWS managed aws/ebs key" in check["detail"]


def test_ebs_encryption_by_default_off_fails(account):
    account.client("ec2").disable_ebs_encryption_by_default()
    check = audit_check(account, "ebs-encryption-by-default")
    assert check["status"] == "FAIL" and "EBS encryption by default is off" in check["detail"]


def test_a_configured_default_key_that_is_still_aws_ebs_fails(account, backupctl):
    arn = "arn:aws:kms:ap-south-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    account.prod.write_config(account.config_file, ebsEncryption={"defaultKmsKey": arn})
    clients = _stubbed_clients(account)
    e = PartialStubber(clients["ec2"], {"GetEbsDefaultKmsKeyId"})
    e.add_response("get_ebs_default_kms_key_id", {"KmsKeyId": "alias/aws/ebs"}, {})
    with e:
        result = backupctl("audit", "--json", "--config-file", str(account.config_file), "--log-file",
                           str(account.log_file), clients=clients)
    check = status_of(result.json(), "ebs-encryption-by-default")
    assert check == {"name": "ebs-encryption-by-default", "status": "FAIL",
                     "detail": f"on, but new volumes get alias/aws/ebs; ebsEncryption.defaultKmsKey is {arn}"}


# --- the air-gapped vault and the guard rails -----------------------------------------------------

def test_air_gapped_vault_not_configured_is_ok(account):
    assert audit_check(account, "air-gapped-vault")["detail"] == "not configured (backup.airGappedVault)"


def test_configured_air_gapped_vault_that_does_not_exist_fails(account):
    account.prod.write_config(account.config_file, ebsEncryption={"defaultKmsKey": "stack"}, backup={
        **account.prod.stack_config()["config"]["quickport-backup:backup"],
        "airGappedVault": {"minRetentionDays": 7, "maxRetentionDays": 35}})
    assert audit_check(account, "air-gapped-vault")["status"] == "FAIL"


@pytest.mark.parametrize("vault, status", [
    ({"VaultType": "LOGICALLY_AIR_GAPPED_BACKUP_VAULT", "VaultState": "AVAILABLE", "MinRetentionDays": 7,
      "MaxRetentionDays": 35, "Locked": True}, "ok"),
    ({"VaultType": "BACKUP_VAULT", "MinRetentionDays": 7, "MaxRetentionDays": 35}, "FAIL"),
    ({"VaultType": "LOGICALLY_AIR_GAPPED_BACKUP_VAULT", "VaultState": "FAILED", "MinRetentionDays": 7}, "FAIL"),
])
def test_air_gapped_vault_check_reads_type_state_and_retention(vault, status):
    # moto has no logically air-gapped vaults: the check runs on a stubbed client (model-checked).
    cfg = load_stack_config("prod")
    cfg = dataclasses.replace(cfg, backup=dataclasses.replace(cfg.backup, air_gapped_vault=AirGappedVault(7, 35)))
    backup = boto3.client("backup", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(backup) as stub:
        stub.add_response("describe_backup_vault", {"BackupVaultName": "quickport-prod-daily-air-gapped", **vault},
                          {"BackupVaultName": "quickport-prod-daily-air-gapped"})

        class OneClient:
            region = REGION

            def client(self, service, region=None):
                return backup
        check = check_air_gapped_vault(AuditScope(OneClient(), cfg, "i-0a1b2c3d4e5f67890", _now(), 26))
    assert check.status == status


def test_guard_rails_on_the_configured_group_are_ok(account):
    assert audit_check(account, "guard-rails-attached")["detail"] == (
        "quickport-backup-operator-guard-rails attached to group quickport-operators")


def test_guard_rails_detached_fail(account):
    iam = account.client("iam")
    arn = f"arn:aws:iam::{ACCOUNT}:policy/quickport-backup-operator-guard-rails"
    iam.detach_group_policy(GroupName="quickport-operators", PolicyArn=arn)
    check = audit_check(account, "guard-rails-attached")
    assert check["status"] == "FAIL" and check["detail"] == (
        "quickport-backup-operator-guard-rails is attached to nobody; not to group quickport-operators")


def _rewrite_latest_manifest(account, **changes) -> dict:
    """Rewrite the manifest latest.json names (as someone or something could) with `changes`."""
    s3 = account.client("s3")
    latest = json.loads(s3.get_object(Bucket=BUCKET, Key=f"mysql/{DB}/latest.json")["Body"].read())
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=latest["manifest"])["Body"].read())
    s3.put_object(Bucket=BUCKET, Key=latest["manifest"], Body=json.dumps({**manifest, **changes}).encode())
    return manifest


def test_a_manifest_whose_dump_object_is_missing_fails(account):
    manifest = _rewrite_latest_manifest(account, key=f"mysql/{DB}/2020/01/01/{DB}-gone.sql.zst")
    check = audit_check(account, "dump-fresh")
    assert (check["status"], "does not exist" in check["detail"]) == ("FAIL", True), (check, manifest["key"])


def test_a_manifest_whose_dump_object_has_another_size_fails(account):
    _rewrite_latest_manifest(account, bytes=11)
    check = audit_check(account, "dump-fresh")
    assert (check["status"], "is 10 bytes, the manifest says 11" in check["detail"]) == ("FAIL", True), check


def test_a_manifest_finished_in_the_future_fails(account):
    _rewrite_latest_manifest(account, finished_at=quickport_dump.isoformat(_now() + dt.timedelta(hours=3)))
    check = audit_check(account, "dump-fresh")
    assert (check["status"], "in the future" in check["detail"]) == ("FAIL", True), check


def test_a_manifest_finished_a_minute_ahead_is_clock_skew_and_ok(account):
    _rewrite_latest_manifest(account, finished_at=quickport_dump.isoformat(_now() + dt.timedelta(minutes=1)))
    assert audit_check(account, "dump-fresh")["status"] == "ok"


def test_the_audit_help_describes_every_check():
    from scripts import cli
    from scripts.workflows.audit import CHECKS
    out = cli.build_parser()._subparsers._group_actions[0].choices["audit"].format_help()
    assert [name for name, _ in CHECKS if name.removesuffix("s") not in out] == []   # "baseline <name>"
    assert "4 x binlog.intervalSeconds + 60 s" in out
