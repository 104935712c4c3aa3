"""BaselineSnapshots on the mock engine: named, tagged, protected, retained and locked snapshots."""
import datetime as dt

from components.baselines import BaselineSnapshots, BaselineSnapshotsArgs
from components.config import Baseline, SnapshotLock

BASELINES_NS = "quickport-backup:baselines"
NAME = "prod-root-2026-11-20-before-php-upgrade"


def test_one_snapshot_of_the_configured_volume_per_baseline(prod_stack):
    snapshot = prod_stack.one("aws:ebs/snapshot:Snapshot")
    assert snapshot.name == f"quickport-prod-baselines-{NAME}"
    assert snapshot.inputs["volumeId"] == "vol-0f1e2d3c4b5a69788"


def test_snapshot_tags_name_date_reason_instance_volume_and_strategy(prod_stack):
    # Instance and Volume are what `backupctl verify` checks, as on a pre-maintenance snapshot.
    assert prod_stack.one("aws:ebs/snapshot:Snapshot").inputs["tags"] == {
        "Name": NAME, "Date": "2026-11-20", "Reason": "php-upgrade", "Instance": "i-0a1b2c3d4e5f67890",
        "Volume": "vol-0f1e2d3c4b5a69788", "Strategy": "quickport-backup"}


def test_snapshot_is_protected_and_retained_on_delete(prod_stack):
    snapshot = prod_stack.one("aws:ebs/snapshot:Snapshot")
    assert snapshot.protect and snapshot.retain_on_delete


def test_each_snapshot_is_locked_as_configured(stack_with):
    declared = stack_with({BASELINES_NS: [{"name": NAME, "volumeId": "vol-0f1e2d3c4b5a69788",
                                           "lock": {"mode": "compliance", "days": 14, "coolOffHours": 24}}]})
    snapshot = declared.one("aws:ebs/snapshot:Snapshot")
    lock = declared.one("pulumi-python:dynamic/quickport:EbsSnapshotLock")
    assert lock.inputs["snapshot_id"] == snapshot.id
    assert (lock.inputs["mode"], lock.inputs["days"], lock.inputs["cool_off_hours"]) == ("compliance", 14, 24)
    assert lock.inputs["region"] == "ap-south-1"


def test_lock_is_protected_and_depends_on_its_snapshot(prod_stack):
    lock = prod_stack.one("pulumi-python:dynamic/quickport:EbsSnapshotLock")
    assert lock.protect
    assert prod_stack.one("aws:ebs/snapshot:Snapshot").urn in lock.dependencies


def test_snapshot_and_lock_are_parented_to_the_component(prod_stack):
    component = prod_stack.one("quickport:backup:BaselineSnapshots")
    assert {r.type for r in prod_stack.children_of(component)} == {
        "aws:ebs/snapshot:Snapshot", "pulumi-python:dynamic/quickport:EbsSnapshotLock"}


def test_no_baselines_declare_no_snapshots(stack_with):
    declared = stack_with(drop=(BASELINES_NS,))
    assert declared.of_type("aws:ebs/snapshot:Snapshot") == []
    assert len(declared.of_type("quickport:backup:BaselineSnapshots")) == 1


def test_two_baselines_get_distinct_snapshots_and_locks(run_component):
    lock = SnapshotLock()
    baselines = tuple(
        Baseline(name=f"prod-root-2026-11-2{i}-before-step-{i}", volume_id="vol-0f1e2d3c4b5a69788",
                 lock=lock, date=dt.date(2026, 11, 20 + i), action=f"step-{i}") for i in (1, 2))
    declared = run_component(
        lambda: BaselineSnapshots("b", BaselineSnapshotsArgs("ap-south-1", "i-0a1b2c3d4e5f67890", baselines)))
    assert sorted(s.inputs["tags"]["Reason"] for s in declared.of_type("aws:ebs/snapshot:Snapshot")) == [
        "step-1", "step-2"]
    assert len(declared.of_type("pulumi-python:dynamic/quickport:EbsSnapshotLock")) == 2
