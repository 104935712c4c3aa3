"""backupctl restore-instance (section 6.1) against the emulator; replace-root tasks (not in moto)
through a PartialStubber limited to those operations (the others reach the emulator)."""
from __future__ import annotations

import json

from botocore.stub import ANY

from components import tags as restoreops
from scripts.offline.stubs import PartialStubber
from tests.fixtures.aws_account import AZ, client
from tests.test_cli_restore_support import account_state, describe_instance, root_of

FAST = ["--poll-seconds", "0.2", "--timeout", "1"]


def no_replace_root_tasks(ec2, *faults: str) -> PartialStubber:
    """moto lacks DescribeReplaceRootVolumeTasks: answer 'none' (checked against the model). `faults`
    names more operations a test queues answers for (one stubber per client: a second would be inert)."""
    stub = PartialStubber(ec2, {"DescribeReplaceRootVolumeTasks", "CreateReplaceRootVolumeTask", "AttachVolume",
                                *faults}, passthrough=True)
    stub.add_response("describe_replace_root_volume_tasks", {"ReplaceRootVolumeTasks": []})
    stub.activate()
    return stub


def task(prod, state: str, task_id: str = "replacevol-0123456789abcdef0") -> dict:
    return {"ReplaceRootVolumeTaskId": task_id, "InstanceId": prod.instance_id, "TaskState": state,
            "StartTime": "2026-11-26T10:00:00Z", "SnapshotId": prod.snapshot_id, "DeleteReplacedRootVolume": False}


def run(backupctl, prod, *args, ec2=None):
    result = backupctl("restore-instance", "--snapshot", prod.snapshot_id, *args, *prod.common_args(),
                       clients={"ec2": ec2} if ec2 is not None else None)
    return result.code, result.out, result.err


def refused(backupctl, prod, ec2, *args) -> str:
    """Run the restore with `args` through `ec2`: it must exit 1 having changed nothing. Its stdout."""
    before = account_state(ec2)
    code, out, _ = run(backupctl, prod, *args, ec2=ec2)
    assert code == 1
    assert account_state(ec2) == before
    return out


# --- the plan ------------------------------------------------------------------------------------------

def test_plan_without_yes_changes_nothing(prod, backupctl):
    ec2 = client("ec2")
    no_replace_root_tasks(ec2)
    before = account_state(ec2)
    code, out, _ = run(backupctl, prod, "--method", "detach", ec2=ec2)
    assert code == 0
    assert account_state(ec2) == before
    assert "re-run with --yes" in out


def test_plan_names_instance_root_device_az_snapshot_and_elastic_ip(prod, backupctl):
    ec2 = client("ec2")
    no_replace_root_tasks(ec2)
    code, out, _ = run(backupctl, prod, "--method", "detach", "--json", ec2=ec2)
    plan = json.loads(out)["plan"]
    assert code == 0
    assert (plan["instance"]["id"], plan["instance"]["availabilityZone"], plan["instance"]["rootDeviceName"],
            plan["currentRootVolume"]["VolumeId"], plan["snapshot"]["id"], plan["elasticIp"]["AllocationId"]) == \
           (prod.instance_id, AZ, prod.root_device, prod.root_volume_id, prod.snapshot_id, prod.allocation_id)


def test_detach_plan_copies_volume_type_iops_and_throughput(prod, backupctl):
    ec2 = client("ec2")
    no_replace_root_tasks(ec2)
    ec2.modify_volume(VolumeId=prod.root_volume_id, Iops=4000, Throughput=250)
    _, out, _ = run(backupctl, prod, "--method", "detach", "--json", ec2=ec2)
    assert json.loads(out)["plan"]["newVolume"] == {"VolumeType": "gp3", "Size": 20, "Iops": 4000, "Throughput": 250}


def test_snapshot_found_by_name_tag(prod, backupctl):
    ec2 = client("ec2")
    no_replace_root_tasks(ec2)
    result = backupctl("restore-instance", "--snapshot", prod.snapshot_name, "--json", *prod.common_args(),
                       clients={"ec2": ec2})
    assert result.code == 0
    assert result.json()["plan"]["snapshot"]["id"] == prod.snapshot_id


def test_unknown_snapshot_is_a_usage_error_naming_the_option(prod, backupctl):
    result = backupctl("restore-instance", "--snapshot", "prod-root-2026-01-01-before-nothing", *prod.common_args())
    err = result.err
    assert result.code == 2
    assert "--snapshot 'prod-root-2026-01-01-before-nothing': no snapshot" in err


def test_unknown_method_is_a_usage_error_listing_the_methods(prod, backupctl):
    result = backupctl("restore-instance", "--snapshot", prod.snapshot_id, "--method", "swap", *prod.common_args())
    assert result.code == 2
    assert "replace-root" in result.err


# --- concurrency ---------------------------------------------------------------------------------------

def test_restore_refused_while_marker_tag_is_on_the_instance(prod, backupctl):
    ec2 = client("ec2")
    no_replace_root_tasks(ec2)
    ec2.create_tags(Resources=[prod.instance_id], Tags=[{"Key": restoreops.RESTORE_MARKER_TAG, "Value": "other run"}])
    assert "already in progress" in refused(backupctl, prod, ec2, "--method", "detach", "--yes", *FAST)


def test_restore_refused_while_a_replace_root_task_is_in_progress(prod, backupctl):
    ec2 = client("ec2")
    stub = PartialStubber(ec2, {"DescribeReplaceRootVolumeTasks"}, passthrough=True)
    stub.add_response("describe_replace_root_volume_tasks", {"ReplaceRootVolumeTasks": [task(prod, "in-progress")]},
                      {"Filters": [{"Name": "instance-id", "Values": [prod.instance_id]}]})
    stub.activate()
    assert "replacevol-0123456789abcdef0 (in-progress)" in refused(backupctl, prod, ec2, "--yes", *FAST)


# --- detach method on moto --------------------------------------------------------------------------------

def test_detach_restore_attaches_a_volume_from_the_snapshot_at_the_root_device(prod, backupctl):
    ec2 = client("ec2")
    no_replace_root_tasks(ec2)
    code, out, _ = run(backupctl, prod, "--method", "detach", "--yes", "--json", *FAST, ec2=ec2)
    result = json.loads(out)
    new_root = root_of(ec2, prod.instance_id)
    volume = ec2.describe_volumes(VolumeIds=[new_root])["Volumes"][0]
    assert code == 0, result
    assert (new_root, volume["SnapshotId"], volume["AvailabilityZone"]) == (
        result["newRootVolumeId"], prod.snapshot_id, AZ)


def test_detach_restore_keeps_the_old_root_tagged(prod, backupctl):
    ec2 = client("ec2")
    no_replace_root_tasks(ec2)
    run(backupctl, prod, "--method", "detach", "--yes", *FAST, ec2=ec2)
    old = ec2.describe_volumes(VolumeIds=[prod.root_volume_id])["Volumes"][0]
    assert old["State"] == "available"
    assert restoreops.REPLACED_TAG in {t["Key"] for t in old.get("Tags", [])}


def test_detach_restore_leaves_instance_running_with_its_elastic_ip(prod, backupctl):
    ec2 = client("ec2")
    no_replace_root_tasks(ec2)
    run(backupctl, prod, "--method", "detach", "--yes", *FAST, ec2=ec2)
    address = ec2.describe_addresses(AllocationIds=[prod.allocation_id])["Addresses"][0]
    assert describe_instance(ec2, prod.instance_id)["State"]["Name"] == "running"
    assert address.get("InstanceId") == prod.instance_id


def test_detach_restore_takes_a_completed_safety_snapshot_of_the_old_root_first(prod, backupctl):
    ec2 = client("ec2")
    no_replace_root_tasks(ec2)
    _, out, _ = run(backupctl, prod, "--method", "detach", "--yes", "--json", *FAST, ec2=ec2)
    safety = json.loads(out)["safetySnapshot"]
    snap = ec2.describe_snapshots(SnapshotIds=[safety["id"]])["Snapshots"][0]
    name = {t["Key"]: t["Value"] for t in snap["Tags"]}["Name"]
    assert (snap["VolumeId"], snap["State"]) == (prod.root_volume_id, "completed")
    assert name.startswith("prod-root-") and f"-before-restore-{prod.snapshot_id}-" in name


def test_detach_restore_removes_the_marker_tag_and_reports_recovery_time(prod, backupctl):
    ec2 = client("ec2")
    no_replace_root_tasks(ec2)
    _, out, _ = run(backupctl, prod, "--method", "detach", "--yes", *FAST, ec2=ec2)
    tags = {t["Key"] for t in describe_instance(ec2, prod.instance_id).get("Tags", [])}
    assert restoreops.RESTORE_MARKER_TAG not in tags
    assert "recovery time" in out


def test_detach_restore_logs_start_and_finish(prod, backupctl):
    ec2 = client("ec2")
    no_replace_root_tasks(ec2)
    run(backupctl, prod, "--method", "detach", "--yes", *FAST, ec2=ec2)
    events = [json.loads(line)["event"] for line in prod.log_file.read_text().splitlines()]
    assert events == ["restore-instance-started", "restore-instance-safety-snapshot", "restore-instance-finished"]


# --- detach method: a step fails -----------------------------------------------------------------------------

def test_failed_attach_puts_the_original_root_back_and_starts_the_instance(prod, backupctl):
    ec2 = client("ec2")
    stub = no_replace_root_tasks(ec2)
    stub.add_client_error("attach_volume", "IncorrectState", "vol is busy", 400)
    code, out, _ = run(backupctl, prod, "--method", "detach", "--yes", *FAST, ec2=ec2)
    assert code == 1
    assert "rolled back" in out
    assert root_of(ec2, prod.instance_id) == prod.root_volume_id
    assert describe_instance(ec2, prod.instance_id)["State"]["Name"] == "running"


def test_failed_rollback_prints_the_commands_to_run_next(prod, backupctl):
    ec2 = client("ec2")
    stub = no_replace_root_tasks(ec2)
    stub.add_client_error("attach_volume", "IncorrectState", "vol is busy", 400)
    stub.add_client_error("attach_volume", "IncorrectState", "still busy", 400)
    code, out, _ = run(backupctl, prod, "--method", "detach", "--yes", *FAST, ec2=ec2)
    assert code == 1
    assert (f"aws ec2 attach-volume --volume-id {prod.root_volume_id} --instance-id {prod.instance_id} "
            f"--device {prod.root_device}") in out
    assert f"aws ec2 start-instances --instance-ids {prod.instance_id}" in out


def test_failed_restore_still_removes_the_marker_tag(prod, backupctl):
    ec2 = client("ec2")
    stub = no_replace_root_tasks(ec2)
    stub.add_client_error("attach_volume", "IncorrectState", "vol is busy", 400)
    run(backupctl, prod, "--method", "detach", "--yes", *FAST, ec2=ec2)
    tags = {t["Key"] for t in describe_instance(ec2, prod.instance_id).get("Tags", [])}
    assert restoreops.RESTORE_MARKER_TAG not in tags


# --- replace-root method (Stubber: moto has no replace-root-volume tasks) ------------------------------------

class EmulatedReplacement:
    """What AWS does to the instance when a replace-root-volume task succeeds (moto cannot): a new
    root from the snapshot at the root device, the old one detached and kept."""

    def __init__(self, ec2, prod):
        self.prod, self.done = prod, False
        ec2.meta.events.register("after-call.ec2.DescribeReplaceRootVolumeTasks", self._after)

    def _after(self, parsed, **_):
        tasks = parsed.get("ReplaceRootVolumeTasks", [])
        if self.done or not tasks or tasks[0]["TaskState"] != "succeeded":
            return
        moto = client("ec2")
        moto.detach_volume(VolumeId=self.prod.root_volume_id, InstanceId=self.prod.instance_id,
                           Device=self.prod.root_device)
        new = moto.create_volume(SnapshotId=self.prod.snapshot_id, AvailabilityZone=AZ)["VolumeId"]
        moto.attach_volume(VolumeId=new, InstanceId=self.prod.instance_id, Device=self.prod.root_device)
        self.done = True


def replace_root_stub(ec2, prod, final_state: str) -> PartialStubber:
    stub = PartialStubber(ec2, {"DescribeReplaceRootVolumeTasks", "CreateReplaceRootVolumeTask"}, passthrough=True)
    stub.add_response("describe_replace_root_volume_tasks", {"ReplaceRootVolumeTasks": []})
    stub.add_response("create_replace_root_volume_task", {"ReplaceRootVolumeTask": task(prod, "pending")},
                      {"InstanceId": prod.instance_id, "SnapshotId": prod.snapshot_id,
                       "DeleteReplacedRootVolume": False, "ClientToken": ANY, "TagSpecifications": ANY})
    for state in ("pending", "in-progress", final_state):
        stub.add_response("describe_replace_root_volume_tasks", {"ReplaceRootVolumeTasks": [task(prod, state)]},
                          {"ReplaceRootVolumeTaskIds": ["replacevol-0123456789abcdef0"]})
    stub.activate()
    return stub


def test_replace_root_creates_a_task_keeping_the_old_root_and_polls_until_succeeded(prod, backupctl):
    ec2 = client("ec2")
    stub = replace_root_stub(ec2, prod, "succeeded")
    EmulatedReplacement(ec2, prod)
    code, out, _ = run(backupctl, prod, "--yes", "--json", *FAST, ec2=ec2)
    stub.assert_no_pending_responses()
    assert code == 0, out
    assert json.loads(out)["newRootVolumeId"] == root_of(ec2, prod.instance_id) != prod.root_volume_id


def test_replace_root_task_is_tagged_with_the_run(prod, backupctl):
    ec2 = client("ec2")
    requests = []
    ec2.meta.events.register("before-parameter-build.ec2.CreateReplaceRootVolumeTask",
                             lambda params, **_: requests.append(params))
    replace_root_stub(ec2, prod, "succeeded")
    EmulatedReplacement(ec2, prod)
    _, out, _ = run(backupctl, prod, "--yes", "--json", *FAST, ec2=ec2)
    spec = requests[0]["TagSpecifications"][0]
    assert spec["ResourceType"] == "replace-root-volume-task"
    assert {"Key": restoreops.RESTORE_RUN_TAG, "Value": json.loads(out)["runId"]} in spec["Tags"]


def test_failed_replace_root_task_exits_1_with_next_steps(prod, backupctl):
    ec2 = client("ec2")
    replace_root_stub(ec2, prod, "failed")
    code, out, _ = run(backupctl, prod, "--yes", *FAST, ec2=ec2)
    assert code == 1
    assert "replace-root-volume task replacevol-0123456789abcdef0 failed" in out
    assert root_of(ec2, prod.instance_id) == prod.root_volume_id


def test_failed_detached_replace_root_task_prints_how_to_reattach_the_old_root(prod, backupctl):
    ec2 = client("ec2")
    replace_root_stub(ec2, prod, "failed-detached")
    code, out, _ = run(backupctl, prod, "--yes", *FAST, ec2=ec2)
    assert code == 1
    assert f"aws ec2 attach-volume --volume-id {prod.root_volume_id}" in out


def test_replace_root_on_a_stopped_instance_is_refused_before_any_change(prod, backupctl):
    ec2 = client("ec2")
    no_replace_root_tasks(ec2)
    ec2.stop_instances(InstanceIds=[prod.instance_id])
    assert "replace-root needs a running instance" in refused(backupctl, prod, ec2, "--yes", *FAST)


def test_restore_backs_off_when_another_run_takes_the_instance_at_the_same_moment(prod, backupctl):
    ec2 = client("ec2")
    no_replace_root_tasks(ec2)

    def other_run_writes_its_marker(**_):
        client("ec2").create_tags(Resources=[prod.instance_id],
                                  Tags=[{"Key": restoreops.RESTORE_MARKER_TAG, "Value": "other-run"}])

    ec2.meta.events.register("after-call.ec2.CreateTags", other_run_writes_its_marker)
    code, _, err = run(backupctl, prod, "--method", "detach", "--yes", *FAST, ec2=ec2)
    assert code == 1
    assert "another restore took" in err
    assert root_of(ec2, prod.instance_id) == prod.root_volume_id


def test_failed_elastic_ip_association_keeps_the_restored_root_and_prints_the_command(prod, backupctl):
    ec2 = client("ec2")
    stub = no_replace_root_tasks(ec2, "AssociateAddress")
    stub.add_client_error("associate_address", "InvalidAllocationID.NotFound", "gone", 400)
    code, out, _ = run(backupctl, prod, "--method", "detach", "--yes", *FAST, ec2=ec2)
    assert code == 1
    assert root_of(ec2, prod.instance_id) != prod.root_volume_id
    assert (f"aws ec2 associate-address --allocation-id {prod.allocation_id} --instance-id {prod.instance_id} "
            f"--allow-reassociation") in out


def test_replace_root_task_still_running_at_the_timeout_exits_1_saying_how_to_follow_it(prod, backupctl):
    ec2 = client("ec2")
    stub = PartialStubber(ec2, {"DescribeReplaceRootVolumeTasks", "CreateReplaceRootVolumeTask"}, passthrough=True)
    stub.add_response("describe_replace_root_volume_tasks", {"ReplaceRootVolumeTasks": []})
    stub.add_response("create_replace_root_volume_task", {"ReplaceRootVolumeTask": task(prod, "pending")})
    for _ in range(30):
        stub.add_response("describe_replace_root_volume_tasks", {"ReplaceRootVolumeTasks": [task(prod, "in-progress")]})
    stub.activate()
    code, out, _ = run(backupctl, prod, "--yes", "--poll-seconds", "0.1", "--timeout", "0.005", ec2=ec2)
    assert code == 1
    assert "still in-progress after" in out
    assert "describe-replace-root-volume-tasks --replace-root-volume-task-ids replacevol-0123456789abcdef0" in out


# --- an endpoint without the replace-root API (moto itself, as in `backupctl demo`) --------------------

def test_detach_plan_warns_when_replace_root_tasks_cannot_be_listed(prod, backupctl):
    code, out, _ = run(backupctl, prod, "--method", "detach", "--json")
    plan = json.loads(out)["plan"]
    assert code == 0
    assert any("could not list replace-root-volume tasks" in w for w in plan["warnings"])


def test_replace_root_plan_is_blocked_when_replace_root_tasks_cannot_be_listed(prod, backupctl):
    code, out, _ = run(backupctl, prod, "--json")
    assert code == 1
    assert any("could not list replace-root-volume tasks" in b for b in json.loads(out)["plan"]["blockers"])


def test_backupctl_launcher_prints_the_plan_through_aws_endpoint_url(prod, backupctl):
    proc = backupctl.launch("restore-instance", "--snapshot", prod.snapshot_id, "--method", "detach",
                            *prod.common_args())
    assert proc.code == 0, proc.err
    assert f"detach the root {prod.root_volume_id} from {prod.root_device}" in proc.out


def interrupted_detach_restore(backupctl, prod):
    """A detach restore the operator stops with Ctrl-C while the new volume is being created."""
    ec2 = client("ec2")
    no_replace_root_tasks(ec2)

    def operator_presses_ctrl_c(**_):
        raise KeyboardInterrupt

    ec2.meta.events.register("before-call.ec2.CreateVolume", operator_presses_ctrl_c)
    return run(backupctl, prod, "--method", "detach", "--yes", *FAST, ec2=ec2), ec2


def test_interrupted_detach_restore_prints_the_way_back_and_removes_the_marker(prod, backupctl):
    (code, _, err), ec2 = interrupted_detach_restore(backupctl, prod)
    tags = {t["Key"] for t in describe_instance(ec2, prod.instance_id).get("Tags", [])}
    assert code == 130
    assert (f"aws ec2 attach-volume --volume-id {prod.root_volume_id} --instance-id {prod.instance_id} "
            f"--device {prod.root_device}") in err
    assert restoreops.RESTORE_MARKER_TAG not in tags
