"""Shared arrangement for the restore tests (no tests here): a stand-in production instance on the
moto server, a Stubber limited to the operations moto lacks, and a stand-in SSM agent.

Everything is arranged with the same boto3 API the product uses; the product reaches moto through
AWS_ENDPOINT_URL (fixture `aws`), and pre-built clients go in through `scripts.cli.main(clients=...)`.
"""
from __future__ import annotations

import json
import os
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from components.config import stack_file

REGION = "ap-south-1"
AZ = "ap-south-1a"


class ScopedStubber(Stubber):
    """A botocore Stubber for only the named operations (APIs moto lacks, or a fault to inject).
    Requests and responses are still checked against the service model; a call to any other
    operation, or to a named one with nothing queued for it, goes to the moto server as usual."""

    def __init__(self, client, *operations: str):
        super().__init__(client)
        self.operations = operations

    def activate(self):
        service = self.client.meta.service_model.service_id.hyphenize()
        for op in self.operations:
            self.client.meta.events.register_first(
                f"before-parameter-build.{service}.{op}", self._assert_expected_params,
                unique_id=f"{self._expected_params_event_id}-{op}")
            self.client.meta.events.register(
                f"before-call.{service}.{op}", self._get_response_handler, unique_id=f"{self._event_id}-{op}")

    def _queued_for(self, model) -> bool:
        return bool(self._queue) and self._queue[0]["operation_name"] == model.name

    def _assert_expected_params(self, model, params, context, **kwargs):
        if self._queued_for(model):
            super()._assert_expected_params(model, params, context, **kwargs)

    def _get_response_handler(self, model, params, context, **kwargs):
        if self._queued_for(model):
            return super()._get_response_handler(model, params, context, **kwargs)
        return None


def client(service: str):
    return boto3.client(service, region_name=REGION)


@dataclass
class Prod:
    """The stand-in production instance and what the strategy knows about it."""
    instance_id: str
    root_volume_id: str
    root_device: str
    allocation_id: str
    public_ip: str
    subnet_id: str
    vpc_id: str
    image_id: str
    profile_arn: str
    snapshot_id: str
    snapshot_name: str
    bucket: str
    config_file: Path
    log_file: Path

    def argv(self, *args: str) -> list[str]:
        return [*args, "--config-file", str(self.config_file), "--log-file", str(self.log_file)]


def stand_in_ami(ec2) -> dict[str, Any]:
    image_id = ec2.register_image(Name="quickport-prod-base", RootDeviceName="/dev/sda1",
                                  Architecture="x86_64", VirtualizationType="hvm")["ImageId"]
    return ec2.describe_images(ImageIds=[image_id])["Images"][0]


@pytest.fixture
def prod(aws, tmp_path, monkeypatch) -> Prod:
    """A running instance with a gp3 encrypted root volume, an instance profile, an associated Elastic
    IP, a completed pre-maintenance snapshot of its root, the dump bucket, and a stack config file."""
    # The in-process moto server otherwise loads thousands of public AMIs into every fresh region
    # (seconds per test); one registered stand-in AMI is all these tests need.
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    ec2, iam, s3 = client("ec2"), client("iam"), client("s3")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=AZ)["Subnet"]["SubnetId"]
    iam.create_role(RoleName="quickport-prod-ec2", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))
    profile = iam.create_instance_profile(InstanceProfileName="quickport-prod-ec2")["InstanceProfile"]
    iam.add_role_to_instance_profile(InstanceProfileName="quickport-prod-ec2", RoleName="quickport-prod-ec2")
    ami = stand_in_ami(ec2)
    root_device = ami["RootDeviceName"]
    instance = ec2.run_instances(
        ImageId=ami["ImageId"], InstanceType="t3.small", MinCount=1, MaxCount=1, SubnetId=subnet,
        IamInstanceProfile={"Arn": profile["Arn"]},
        BlockDeviceMappings=[{"DeviceName": root_device, "Ebs": {"VolumeSize": 20, "VolumeType": "gp3",
                                                                  "Iops": 3000, "Throughput": 125,
                                                                  "Encrypted": True}}],
    )["Instances"][0]
    iid = instance["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1})
    root = next(m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"] if m["DeviceName"] == root_device)
    address = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=address["AllocationId"], InstanceId=iid)
    name = "prod-root-2026-11-20-before-php-upgrade"
    snap = ec2.create_snapshot(VolumeId=root, TagSpecifications=[{"ResourceType": "snapshot", "Tags": [
        {"Key": "Name", "Value": name}, {"Key": "Strategy", "Value": "quickport-backup"},
        {"Key": "Instance", "Value": iid}]}])
    bucket = "quickport-prod-db-dumps-ap-south-1"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    doc = yaml.safe_load(stack_file("prod").read_text())
    cfg = doc["config"]
    cfg["quickport-backup:instanceId"] = iid
    cfg["quickport-backup:rootVolumeId"] = root
    cfg["quickport-backup:elasticIpAllocationId"] = address["AllocationId"]
    cfg["quickport-backup:baselines"] = []
    cfg["quickport-backup:dumps"]["bucketName"] = bucket
    config_file = tmp_path / "Pulumi.prod.yaml"
    config_file.write_text(yaml.safe_dump(doc))
    return Prod(instance_id=iid, root_volume_id=root, root_device=root_device,
                allocation_id=address["AllocationId"], public_ip=address["PublicIp"], subnet_id=subnet,
                vpc_id=vpc, image_id=ami["ImageId"], profile_arn=profile["Arn"], snapshot_id=snap["SnapshotId"],
                snapshot_name=name, bucket=bucket, config_file=config_file, log_file=tmp_path / "ops.jsonl")


def describe_instance(ec2, instance_id: str) -> dict[str, Any]:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def root_of(ec2, instance_id: str) -> Optional[str]:
    instance = describe_instance(ec2, instance_id)
    return next((m["Ebs"]["VolumeId"] for m in instance.get("BlockDeviceMappings", [])
                 if m["DeviceName"] == instance["RootDeviceName"]), None)


def account_state(ec2) -> dict[str, Any]:
    """Volumes, instances (state, mappings, tags), snapshots and addresses: what a plan must not change."""
    volumes = sorted((v["VolumeId"], v["State"], tuple(sorted((a["InstanceId"], a["Device"]) for a in v.get("Attachments", []))),
                      tuple(sorted((t["Key"], t["Value"]) for t in v.get("Tags", []))))
                     for v in ec2.describe_volumes()["Volumes"])
    instances = sorted((i["InstanceId"], i["State"]["Name"],
                        tuple(sorted((m["DeviceName"], m["Ebs"]["VolumeId"]) for m in i.get("BlockDeviceMappings", []))),
                        tuple(sorted((t["Key"], t["Value"]) for t in i.get("Tags", []))))
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
