"""Section 8: the checklist every pre-maintenance snapshot must pass before maintenance starts."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

from scripts.aws import ec2 as ec2api
from scripts.errors import CommandError
from scripts.times import iso_utc


@dataclass
class CheckItem:
    name: str
    ok: bool
    detail: str


@dataclass
class Checklist:
    """Section 8, after every pre-maintenance snapshot. `ok` only when every item passed."""
    snapshot_id: str
    snapshot_name: Optional[str]
    instance_id: str
    items: list[CheckItem] = field(default_factory=list)
    elastic_ip: Optional[dict[str, Any]] = None
    root_volume_id: Optional[str] = None
    started: Optional[str] = None

    @property
    def ok(self) -> bool:
        return bool(self.items) and all(i.ok for i in self.items)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["ok"] = self.ok
        return doc


def run_checklist(ec2, snapshot: dict[str, Any], instance_id: str,
                  record: Optional[Callable[..., bool]] = None) -> Checklist:
    """The section 8 checks on `snapshot` (a DescribeSnapshots entry) for `instance_id`:
    1 state completed; 2 its volume is the instance's CURRENT root volume; 3 the instance id is
    recorded (tag Instance); 4 the Elastic IP is noted (the instance's associated EIP);
    5 the timestamp is logged: `record(**details)` writes the operations-log line and returns
    whether it was written (without `record`, the item fails: nothing was logged)."""
    tags = ec2api.tags_of(snapshot)
    sid = snapshot["SnapshotId"]
    result = Checklist(snapshot_id=sid, snapshot_name=tags.get("Name"), instance_id=instance_id,
                       started=iso_utc(snapshot.get("StartTime")))
    add = result.items.append

    state = snapshot.get("State")
    add(CheckItem("state completed", state == "completed",
                  f"state {state}, progress {ec2api.progress_percent(snapshot.get('Progress'))}"
                  + (f": {snapshot['StateMessage']}" if snapshot.get("StateMessage") else "")))

    try:
        instance = ec2api.describe_instance(ec2, instance_id)
        current_root = ec2api.root_volume_id(instance)
    except CommandError as e:
        instance, current_root = None, None
        add(CheckItem("volume is the current root volume", False, str(e)))
    if current_root is not None:
        result.root_volume_id = current_root
        same = snapshot.get("VolumeId") == current_root
        add(CheckItem("volume is the current root volume", same,
                      f"snapshot of {snapshot.get('VolumeId')}, instance root is {current_root}"
                      + ("" if same else ": this snapshot would NOT restore the current root")))

    recorded = tags.get("Instance")
    add(CheckItem("instance id recorded", recorded == instance_id,
                  f"tag Instance={recorded}" if recorded == instance_id
                  else f"tag Instance is {recorded!r}, expected {instance_id}"))

    address = ec2api.elastic_ip(ec2, instance_id) if instance is not None else None
    if address:
        result.elastic_ip = {"PublicIp": address.get("PublicIp"), "AllocationId": address.get("AllocationId")}
        add(CheckItem("Elastic IP noted", True,
                      f"{address.get('PublicIp')} ({address.get('AllocationId')})"))
    else:
        add(CheckItem("Elastic IP noted", False,
                      f"instance {instance_id} has no associated Elastic IP: after a restore its public "
                      f"address would change; associate the Elastic IP first"))

    logged = bool(record and record(snapshot_id=sid, snapshot_name=tags.get("Name"), instance_id=instance_id,
                                    volume_id=snapshot.get("VolumeId"), snapshot_started=result.started,
                                    elastic_ip=result.elastic_ip, state=state))
    add(CheckItem("timestamp logged", logged,
                  f"started {result.started}; operations log line written" if logged
                  else f"started {result.started}; the operations log line could NOT be written"))
    return result
