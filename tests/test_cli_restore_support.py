"""Shared arrangement for the restore tests (no tests here): look-ups of the account's state and a
stand-in SSM agent. The account itself is fixture `prod` (tests/fixtures/aws_account.py).

Everything is arranged with the same boto3 API the product uses; the product reaches the emulator
through AWS_ENDPOINT_URL (fixture `aws`), and pre-built clients go in through `backupctl(clients=...)`.
"""
from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any, Optional

from tests.fixtures.aws_account import client


def describe_instance(ec2, instance_id: str) -> dict[str, Any]:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def root_of(ec2, instance_id: str) -> Optional[str]:
    instance = describe_instance(ec2, instance_id)
    return next((m["Ebs"]["VolumeId"] for m in instance.get("BlockDeviceMappings", [])
                 if m["DeviceName"] == instance["RootDeviceName"]), None)


def account_state(ec2) -> dict[str, Any]:
    """Volumes, instances (state, mappings, tags), snapshots and addresses: what a plan must not change."""
    def tags(resource):
        return tuple(sorted((t["Key"], t["Value"]) for t in resource.get("Tags", [])))

    def mappings(instance):
        return tuple(sorted((m["DeviceName"], m["Ebs"]["VolumeId"]) for m in instance.get("BlockDeviceMappings", [])))

    volumes = sorted((v["VolumeId"], v["State"],
                      tuple(sorted((a["InstanceId"], a["Device"]) for a in v.get("Attachments", []))), tags(v))
                     for v in ec2.describe_volumes()["Volumes"])
    instances = sorted((i["InstanceId"], i["State"]["Name"], mappings(i), tags(i))
                       for r in ec2.describe_instances()["Reservations"] for i in r["Instances"])
    snapshots = sorted(s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"])
    addresses = sorted((a["AllocationId"], a.get("InstanceId")) for a in ec2.describe_addresses()["Addresses"])
    return {"volumes": volumes, "instances": instances, "snapshots": snapshots, "addresses": addresses}


# --- a stand-in for the SSM agent on the helper ------------------------------------------------------------

FAKE_LSBLK = textwrap.dedent("""\
    #!/bin/bash
    # lsblk of a Nitro helper: its own root disk and the restored volume (NVMe serial = volume id).
    if [[ " $* " == *" -dnpo NAME,SERIAL "* ]]; then
      echo "/dev/nvme0n1 vol00000000000000000"
      echo "/dev/nvme1n1 $FAKE_SERIAL"
    else
      echo "/dev/nvme1n1 21474836480"
      echo "/dev/nvme1n1p1 $FAKE_FSTYPE 21367462400"
      echo "/dev/nvme1n1p15 vfat 104857600"
    fi
    """)
FAKE_MOUNT = textwrap.dedent("""\
    #!/bin/bash
    # Records how it was called, then makes the mount point show the fixture tree.
    echo "$*" >> "$FAKE_MOUNT_LOG"
    target="${@: -1}"
    cp -a "$FAKE_ROOT/." "$target/"
    """)
FAKE_UMOUNT = textwrap.dedent("""\
    #!/bin/bash
    case "$1" in /mnt/quickport-restore.*) find "$1" -mindepth 1 -delete ;; esac
    """)


class FakeAgent:
    """Plays the SSM agent of the helper: when SendCommand is made on the ssm client, it runs the
    command's real shell script with bash (lsblk/mount/umount replaced by the stand-ins above, the
    'snapshot filesystem' being `root`) and writes its stdout to S3 where the agent would:
    <OutputS3KeyPrefix>/<CommandId>/<InstanceId>/awsrunShellScript/0.awsrunShellScript/stdout."""

    def __init__(self, ssm, workdir: Path, root: Path, fstype: str = "ext4"):
        self.workdir, self.root, self.fstype = workdir, root, fstype
        self.requests: list[dict[str, Any]] = []
        self.results: list[subprocess.CompletedProcess] = []
        self.mount_log = workdir / "mount.log"
        bin_dir = workdir / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        for name, body in (("lsblk", FAKE_LSBLK), ("mount", FAKE_MOUNT), ("umount", FAKE_UMOUNT)):
            (bin_dir / name).write_text(body)
            (bin_dir / name).chmod(0o755)
        self.bin_dir = bin_dir
        ssm.meta.events.register("before-parameter-build.ssm.SendCommand", self._remember)
        ssm.meta.events.register("after-call.ssm.SendCommand", self._run)

    def _remember(self, params, **_):
        self.requests.append(dict(params))

    def _run(self, parsed, **_):
        params = self.requests[-1]
        instance_id = params["InstanceIds"][0]
        ec2 = client("ec2")
        instance = describe_instance(ec2, instance_id)
        attached = [m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]
                    if m["DeviceName"] != instance["RootDeviceName"]]
        env = {**os.environ, "PATH": f"{self.bin_dir}:{os.environ['PATH']}", "FAKE_ROOT": str(self.root),
               "FAKE_SERIAL": attached[-1].replace("-", "") if attached else "none",
               "FAKE_FSTYPE": self.fstype, "FAKE_MOUNT_LOG": str(self.mount_log)}
        result = subprocess.run(["bash", "-c", params["Parameters"]["commands"][0]], env=env,
                                capture_output=True, timeout=60)
        self.results.append(result)
        key = (f"{params['OutputS3KeyPrefix']}/{parsed['Command']['CommandId']}/{instance_id}"
               f"/awsrunShellScript/0.awsrunShellScript")
        s3 = client("s3")
        if result.stdout:
            s3.put_object(Bucket=params["OutputS3BucketName"], Key=f"{key}/stdout", Body=result.stdout)
        if result.stderr:
            s3.put_object(Bucket=params["OutputS3BucketName"], Key=f"{key}/stderr", Body=result.stderr)
