"""`backupctl prune` (and audit's list of expired snapshots): only expired, unlocked, non-baseline
strategy snapshots that are not behind an AMI nor the newest of their action are deleted, only with
--yes, and only when a Recycle Bin rule will keep them.

EC2 is the emulator (snapshots, AMIs, DeleteSnapshot). The Recycle Bin API is a plain Stubber (that
client never reaches the emulator) and DescribeLockedSnapshots, which moto lacks, a PartialStubber.
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Any, Optional

import pytest
from botocore.stub import Stubber

from scripts.offline import standin
from scripts.offline.stubs import PartialStubber
from tests.fixtures.aws_account import BASELINE, client, strategy_snapshots
from tests.test_cli_audit import account, audit_check, plan_rule  # noqa: F401 (that module's fixtures)

PAST = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)).isoformat(timespec="seconds")
FUTURE = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3)).isoformat(timespec="seconds")
RULE = {"Identifier": "a1b2c3d4e5f", "ResourceType": "EBS_SNAPSHOT", "Status": "available", "LockState": "locked",
        "RetentionPeriod": {"RetentionPeriodValue": 7, "RetentionPeriodUnit": "DAYS"},
        "RuleArn": "arn:aws:rbin:ap-south-1:123456789012:rule/a1b2c3d4e5f"}


def _snap(prod, name: str, **tags: str) -> str:
    return standin.tag_snapshot(prod, name, **tags)


@pytest.fixture
def snaps(prod_instance) -> dict[str, str]:
    """The strategy snapshots prune has to judge, by role."""
    p = prod_instance
    made = {"old": _snap(p, "prod-root-2026-10-01-before-composer-update", Reason="composer-update",
                         RetainUntil=PAST)}
    time.sleep(1.1)   # StartTime decides which is the newest of the action
    made["newest"] = _snap(p, "prod-root-2026-10-20-before-composer-update", Reason="composer-update",
                           RetainUntil=PAST)
    made["locked"] = _snap(p, "prod-root-2026-10-02-before-nginx-config", Reason="nginx-config", RetainUntil=PAST)
    made["locked-newest"] = _snap(p, "prod-root-2026-10-03-before-nginx-config", Reason="nginx-config",
                                  RetainUntil=FUTURE)
    # An AMI's snapshot, tagged as `snapshot --action os-upgrade` tags it (moto makes its own for the AMI).
    image = p.ec2.register_image(Name="prod-root-2026-10-04-before-os-upgrade", RootDeviceName="/dev/xvda")
    [mapping] = p.ec2.describe_images(ImageIds=[image["ImageId"]])["Images"][0]["BlockDeviceMappings"]
    made["ami"] = mapping["Ebs"]["SnapshotId"]
    p.ec2.create_tags(Resources=[made["ami"]], Tags=[{"Key": k, "Value": v} for k, v in {
        "Name": "prod-root-2026-10-04-before-os-upgrade", "Strategy": "quickport-backup", "Reason": "os-upgrade",
        "Instance": p.instance_id, "RetainUntil": PAST}.items()])
    time.sleep(1.1)
    made["ami-newest"] = _snap(p, "prod-root-2026-10-05-before-os-upgrade", Reason="os-upgrade", RetainUntil=FUTURE)
    made["young"] = _snap(p, "prod-root-2026-10-06-before-php-upgrade", Reason="php-upgrade", RetainUntil=FUTURE)
    made["untagged"] = _snap(p, "prod-root-2026-10-07-before-php-upgrade", Reason="php-upgrade")
    made["baseline"] = _snap(p, BASELINE, Reason="php-upgrade", RetainUntil=PAST)
    return made


def _clients(rules: Optional[list] = None, *, locked: tuple[str, ...] = (), ec2=None) -> dict[str, Any]:
    rbin = client("rbin")
    r = Stubber(rbin)
    rules = [RULE] if rules is None else rules
    r.add_response("list_rules", {"Rules": [{"Identifier": x["Identifier"]} for x in rules]},
                   {"ResourceType": "EBS_SNAPSHOT"})
    for rule in rules:
        r.add_response("get_rule", rule, {"Identifier": rule["Identifier"]})
    r.activate()
    ec2 = ec2 or client("ec2")
    e = PartialStubber(ec2, {"DescribeLockedSnapshots"}, passthrough=True)
    until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=10)
    e.always("describe_locked_snapshots", {"Snapshots": [
        {"SnapshotId": sid, "LockState": "governance", "LockDuration": 30, "LockExpiresOn": until} for sid in locked]})
    e.activate()
    return {"rbin": rbin, "ec2": ec2}


def _prune(backupctl, prod, snaps, *args: str, rules=None, ec2=None):
    return backupctl("prune", "--json", *args, *prod.common_args(),
                     clients=_clients(rules, locked=(snaps["locked"],), ec2=ec2))


def _decisions(doc) -> dict[str, tuple[bool, str]]:
    return {s["snapshot_id"]: (s["delete"], s["reason"]) for s in doc["plan"]["snapshots"]}


def test_the_plan_marks_only_the_expired_unprotected_older_snapshot_and_deletes_nothing(prod_instance, snaps,
                                                                                        backupctl):
    result = _prune(backupctl, prod_instance, snaps)

    assert result.code == 0, result.err
    decisions = _decisions(result.json())
    assert [sid for sid, (delete, _) in decisions.items() if delete] == [snaps["old"]]
    assert "newest snapshot of action 'composer-update'" in decisions[snaps["newest"]][1]
    assert "locked (governance)" in decisions[snaps["locked"]][1]
    assert "behind the AMI" in decisions[snaps["ami"]][1]
    assert "retained until" in decisions[snaps["young"]][1]
    assert "no RetainUntil" in decisions[snaps["untagged"]][1]
    assert "baseline" in decisions[snaps["baseline"]][1]
    assert len(strategy_snapshots(prod_instance.ec2)) == len(snaps)


def test_yes_deletes_exactly_the_planned_snapshot(prod_instance, snaps, backupctl):
    result = _prune(backupctl, prod_instance, snaps, "--yes")

    assert result.code == 0, result.err
    remaining = {s["SnapshotId"] for s in strategy_snapshots(prod_instance.ec2)}
    assert remaining == set(snaps.values()) - {snaps["old"]}
    assert [e["snapshot_id"] for e in prod_instance.log_lines() if e["event"] == "prune-deleted"] == [snaps["old"]]
    assert [e["event"] for e in prod_instance.log_lines() if e["event"].startswith("prune-")][-1] == "prune-finished"


def test_dry_run_with_yes_deletes_nothing(prod_instance, snaps, backupctl):
    result = _prune(backupctl, prod_instance, snaps, "--yes", "--dry-run")

    assert result.code == 0 and result.json()["executed"] is False
    assert len(strategy_snapshots(prod_instance.ec2)) == len(snaps)


def test_without_a_recycle_bin_rule_nothing_is_deleted_even_with_yes(prod_instance, snaps, backupctl):
    result = _prune(backupctl, prod_instance, snaps, "--yes", rules=[])

    assert result.code == 1
    assert "no available Recycle Bin retention rule" in result.json()["plan"]["blockers"][0]
    assert len(strategy_snapshots(prod_instance.ec2)) == len(snaps)


def test_a_tag_level_rule_for_other_tags_does_not_count(prod_instance, snaps, backupctl):
    other = {**RULE, "ResourceTags": [{"ResourceTagKey": "team", "ResourceTagValue": "web"}]}

    result = _prune(backupctl, prod_instance, snaps, rules=[other])

    assert result.code == 1 and result.json()["plan"]["recycleBinRule"] is None


def test_the_plan_names_the_recycle_bin_rule_that_keeps_deleted_snapshots(prod_instance, snaps, backupctl):
    result = backupctl("prune", *prod_instance.common_args(), clients=_clients(locked=(snaps["locked"],)))

    assert "Recycle Bin rule: a1b2c3d4e5f (Region-level, keeps deleted snapshots 7 days, locked)" in result.out
    assert "nothing deleted; re-run with --yes" in result.out


def test_a_denied_delete_explains_the_guard_rails_and_exits_1(prod_instance, snaps, backupctl):
    ec2 = client("ec2")
    deny = PartialStubber(ec2, {"DeleteSnapshot"}, passthrough=True)
    deny.add_client_error("delete_snapshot", "UnauthorizedOperation", "You are not authorized", 403)
    deny.activate()

    result = _prune(backupctl, prod_instance, snaps, "--yes", ec2=ec2)

    assert result.code == 1
    [item] = [s for s in result.json()["plan"]["snapshots"] if s["delete"]]
    assert "guard-rails operator policy denies ec2:DeleteSnapshot" in item["result"]
    assert snaps["old"] in {s["SnapshotId"] for s in strategy_snapshots(prod_instance.ec2)}


def test_audit_lists_the_snapshots_past_their_retain_until(account):  # noqa: F811 (the fixture)
    expired = standin.tag_snapshot(account.prod, "prod-root-2026-10-01-before-php-upgrade", RetainUntil=PAST)

    check = audit_check(account, "expired-snapshots")

    assert expired in check["detail"] and "backupctl prune" in check["detail"]
