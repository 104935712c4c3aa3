"""Thin boto3 functions for the restore commands (sections 6.1 and 6.2). Each takes a client first.

Same rules as scripts/ec2ops.py (whose instance/snapshot functions the restore commands reuse): one
AWS concept per function, AWS's own shapes, no printing (progress goes through a callback), and a
failure a person must act on raises CommandError with one line. Long waits use the boto3 waiters
with a WaiterConfig derived from the operator's --timeout, except the replace-root-volume task,
which has no waiter and is polled here.
"""
from __future__ import annotations

import base64
import hashlib
import math
import shlex
import time
from typing import Any, Callable, Optional

from botocore.exceptions import ClientError, WaiterError

from scripts.common import CommandError
from scripts.ec2ops import tag_list, tags_of

RESTORE_MARKER_TAG = "quickport:restore-in-progress"     # on the instance while a restore runs
REPLACED_TAG = "quickport:replaced-by-restore"           # on a root volume a restore took out of service
RESTORED_FROM_TAG = "quickport:restored-from"            # on a volume created from a snapshot
RESTORE_RUN_TAG = "quickport:restore-run"                # on everything a run created (cleanup key)
# Task states in which AWS is still working on a root-volume replacement ("failing" ends in failed*).
ACTIVE_TASK_STATES = ("pending", "in-progress", "failing")
FAILED_TASK_STATES = ("failed", "failed-detached")
# Device names a temporary volume may take on a helper (the AWS-recommended range for EBS data volumes).
DATA_DEVICE_NAMES = tuple(f"/dev/sd{c}" for c in "fghijklmnop")

Progress = Callable[[str], None]


def _noop(_: str) -> None:
    pass


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _waiter_config(timeout: float, poll_seconds: float) -> dict[str, Any]:
    """A boto3 WaiterConfig that waits `timeout` seconds, checking every `poll_seconds`."""
    return {"Delay": poll_seconds, "MaxAttempts": max(1, math.ceil(timeout / poll_seconds))}


def _wait(client, waiter_name: str, what: str, timeout: float, poll_seconds: float, **params: Any) -> None:
    """Run a boto3 waiter for at most `timeout` seconds; CommandError saying whether time ran out
    or the resource reached a state it cannot leave (e.g. an instance terminated while starting)."""
    try:
        client.get_waiter(waiter_name).wait(WaiterConfig=_waiter_config(timeout, poll_seconds), **params)
    except WaiterError as e:
        reason = str(e.kwargs.get("reason") or e)
        wanted = waiter_name.replace("_", " ")
        if "Max attempts exceeded" in reason:
            raise CommandError(f"{what}: not {wanted.split(' ', 1)[1]} after {timeout / 60:g} minutes") from None
        raise CommandError(f"{what}: waiting for {wanted} failed: {reason}") from None


# --- volumes ----------------------------------------------------------------------------------------

def describe_volume(ec2, volume_id: str) -> dict[str, Any]:
    return ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]


def volume_settings_like(volume: dict[str, Any], snapshot: dict[str, Any]) -> dict[str, Any]:
    """CreateVolume parameters that reproduce `volume`'s type and performance for a volume made from
    `snapshot`: same type, IOPS (io1/io2/gp3) and throughput (gp3), at least the snapshot's size and
    the old volume's size (a grown root stays grown). Encryption follows the snapshot (a volume from
    an encrypted snapshot is always encrypted with the snapshot's key); an unencrypted snapshot gives
    an encrypted volume when the old volume was encrypted, with the old volume's key."""
    params: dict[str, Any] = {"VolumeType": volume.get("VolumeType", "gp3"),
                              "Size": max(int(snapshot.get("VolumeSize") or 0), int(volume.get("Size") or 0))}
    if params["VolumeType"] in ("io1", "io2", "gp3") and volume.get("Iops"):
        params["Iops"] = volume["Iops"]
    if params["VolumeType"] == "gp3" and volume.get("Throughput"):
        params["Throughput"] = volume["Throughput"]
    if not snapshot.get("Encrypted") and volume.get("Encrypted"):
        params["Encrypted"] = True
        if volume.get("KmsKeyId"):
            params["KmsKeyId"] = volume["KmsKeyId"]
    return params


def create_volume_from_snapshot(ec2, snapshot_id: str, availability_zone: str, settings: dict[str, Any],
                                tags: dict[str, str]) -> str:
    """CreateVolume from the snapshot in that AZ, tagged at creation; returns the volume id."""
    return ec2.create_volume(SnapshotId=snapshot_id, AvailabilityZone=availability_zone,
                             TagSpecifications=[{"ResourceType": "volume", "Tags": tag_list(tags)}],
                             **settings)["VolumeId"]


def wait_volume_available(ec2, volume_id: str, timeout: float, poll_seconds: float) -> None:
    _wait(ec2, "volume_available", f"volume {volume_id}", timeout, poll_seconds, VolumeIds=[volume_id])


def wait_volume_in_use(ec2, volume_id: str, timeout: float, poll_seconds: float) -> None:
    _wait(ec2, "volume_in_use", f"volume {volume_id}", timeout, poll_seconds, VolumeIds=[volume_id])


def detach_volume(ec2, volume_id: str, instance_id: str, device: str) -> None:
    # InstanceId and Device pin the detach to the attachment we mean (never whatever else it is on).
    ec2.detach_volume(VolumeId=volume_id, InstanceId=instance_id, Device=device)


def attach_volume(ec2, volume_id: str, instance_id: str, device: str) -> None:
    ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device=device)


def delete_volume(ec2, volume_id: str) -> None:
    ec2.delete_volume(VolumeId=volume_id)


def free_device_name(instance: dict[str, Any]) -> str:
    """The first of /dev/sdf../dev/sdp the instance does not use (xvdX counts as sdX)."""
    used = {m.get("DeviceName", "").replace("/dev/xvd", "/dev/sd") for m in instance.get("BlockDeviceMappings") or []}
    for name in DATA_DEVICE_NAMES:
        if name not in used:
            return name
    raise CommandError(f"instance {instance['InstanceId']} has no free device name in /dev/sdf../dev/sdp")


# --- instances --------------------------------------------------------------------------------------

def stop_instance(ec2, instance_id: str, timeout: float, poll_seconds: float) -> None:
    ec2.stop_instances(InstanceIds=[instance_id])
    _wait(ec2, "instance_stopped", f"instance {instance_id}", timeout, poll_seconds, InstanceIds=[instance_id])


def start_instance(ec2, instance_id: str, timeout: float, poll_seconds: float) -> None:
    ec2.start_instances(InstanceIds=[instance_id])
    _wait(ec2, "instance_running", f"instance {instance_id}", timeout, poll_seconds, InstanceIds=[instance_id])


def wait_instance_running(ec2, instance_id: str, timeout: float, poll_seconds: float) -> None:
    _wait(ec2, "instance_running", f"instance {instance_id}", timeout, poll_seconds, InstanceIds=[instance_id])


def run_helper_instance(ec2, *, image_id: str, instance_type: str, subnet_id: str,
                        instance_profile: dict[str, str], security_group_ids: list[str],
                        image: dict[str, Any], tags: dict[str, str]) -> str:
    """RunInstances for one temporary helper: IMDSv2 only, terminates itself on an OS shutdown,
    its own root volume deleted with it, tagged at creation. Returns the instance id."""
    params: dict[str, Any] = {
        "ImageId": image_id, "InstanceType": instance_type, "MinCount": 1, "MaxCount": 1,
        "SubnetId": subnet_id, "IamInstanceProfile": instance_profile,
        "InstanceInitiatedShutdownBehavior": "terminate",
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tag_list(tags)},
                              {"ResourceType": "volume", "Tags": tag_list(tags)}],
    }
    if security_group_ids:
        params["SecurityGroupIds"] = security_group_ids
    root = _helper_root_mapping(image)
    if root:
        params["BlockDeviceMappings"] = [root]
    return ec2.run_instances(**params)["Instances"][0]["InstanceId"]


def _helper_root_mapping(image: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The AMI's own root mapping with DeleteOnTermination forced on: a custom AMI made with it off
    would otherwise leave the helper's root volume behind."""
    for m in image.get("BlockDeviceMappings") or []:
        if m.get("DeviceName") == image.get("RootDeviceName") and m.get("Ebs", {}).get("SnapshotId"):
            ebs = {k: m["Ebs"][k] for k in ("SnapshotId", "VolumeSize", "VolumeType") if k in m["Ebs"]}
            return {"DeviceName": m["DeviceName"], "Ebs": {**ebs, "DeleteOnTermination": True}}
    return None


def terminate_instance(ec2, instance_id: str, timeout: float, poll_seconds: float) -> None:
    ec2.terminate_instances(InstanceIds=[instance_id])
    _wait(ec2, "instance_terminated", f"instance {instance_id}", timeout, poll_seconds, InstanceIds=[instance_id])


# --- the in-progress marker (detach restores have no AWS-side task to look for) -----------------------

def restore_marker(instance: dict[str, Any]) -> Optional[str]:
    return tags_of(instance).get(RESTORE_MARKER_TAG)


def set_restore_marker(ec2, instance_id: str, value: str) -> None:
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": RESTORE_MARKER_TAG, "Value": value}])


def clear_restore_marker(ec2, instance_id: str, value: str) -> None:
    # With the Value given, DeleteTags removes the tag only while it still holds OUR value.
    ec2.delete_tags(Resources=[instance_id], Tags=[{"Key": RESTORE_MARKER_TAG, "Value": value}])


def tag(ec2, resource_id: str, tags: dict[str, str]) -> None:
    ec2.create_tags(Resources=[resource_id], Tags=tag_list(tags))


# --- Elastic IP -------------------------------------------------------------------------------------

def associate_elastic_ip(ec2, allocation_id: str, instance_id: str) -> None:
    ec2.associate_address(AllocationId=allocation_id, InstanceId=instance_id, AllowReassociation=True)


def address_by_allocation(ec2, allocation_id: str) -> Optional[dict[str, Any]]:
    try:
        addresses = ec2.describe_addresses(AllocationIds=[allocation_id])["Addresses"]
    except ClientError as e:
        if _error_code(e) in ("InvalidAllocationID.NotFound", "InvalidAllocationID.Malformed"):
            return None
        raise
    return addresses[0] if addresses else None


# --- replace-root-volume tasks (not in moto: tested with botocore Stubber) ----------------------------

def replace_root_tasks(ec2, instance_id: str) -> list[dict[str, Any]]:
    paginator = ec2.get_paginator("describe_replace_root_volume_tasks")
    tasks: list[dict[str, Any]] = []
    for page in paginator.paginate(Filters=[{"Name": "instance-id", "Values": [instance_id]}]):
        tasks.extend(page.get("ReplaceRootVolumeTasks", []))
    return tasks


def active_replace_root_tasks(ec2, instance_id: str) -> list[dict[str, Any]]:
    return [t for t in replace_root_tasks(ec2, instance_id) if t.get("TaskState") in ACTIVE_TASK_STATES]


def create_replace_root_task(ec2, instance_id: str, snapshot_id: str, tags: dict[str, str],
                             client_token: str) -> dict[str, Any]:
    """CreateReplaceRootVolumeTask from a snapshot, KEEPING the replaced root volume. The client
    token makes a retried request (standard retries) create one task, not two."""
    return ec2.create_replace_root_volume_task(
        InstanceId=instance_id, SnapshotId=snapshot_id, DeleteReplacedRootVolume=False,
        ClientToken=client_token,
        TagSpecifications=[{"ResourceType": "replace-root-volume-task", "Tags": tag_list(tags)}],
    )["ReplaceRootVolumeTask"]


def describe_replace_root_task(ec2, task_id: str) -> dict[str, Any]:
    tasks = ec2.describe_replace_root_volume_tasks(ReplaceRootVolumeTaskIds=[task_id])["ReplaceRootVolumeTasks"]
    if not tasks:
        raise CommandError(f"replace-root-volume task {task_id} not found")
    return tasks[0]


def wait_replace_root_task(ec2, task_id: str, timeout: float, progress: Progress = _noop, *,
                           poll_seconds: float = 15.0, clock: Callable[[], float] = time.monotonic,
                           sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Poll DescribeReplaceRootVolumeTasks (EC2 has no waiter for it) until `succeeded`, with a
    progress line on every state change. Returns the task; the caller handles failed states.
    CommandError when `timeout` seconds pass first (the task keeps running in AWS)."""
    deadline = clock() + timeout
    last_state = None
    while True:
        task = describe_replace_root_task(ec2, task_id)
        state = task.get("TaskState")
        if state != last_state:
            progress(f"replace-root-volume task {task_id}: {state}")
            last_state = state
        if state == "succeeded" or state in FAILED_TASK_STATES:
            return task
        remaining = deadline - clock()
        if remaining <= 0:
            raise CommandError(
                f"replace-root-volume task {task_id} still {state} after {timeout / 60:g} minutes; it "
                f"keeps running in AWS: aws ec2 describe-replace-root-volume-tasks "
                f"--replace-root-volume-task-ids {task_id}")
        sleep(min(poll_seconds, remaining))


# --- SSM Run Command ----------------------------------------------------------------------------------

def send_shell_script(ssm, instance_id: str, script: str, *, comment: str, execution_timeout: int,
                      output_bucket: str, output_prefix: str, output_region: str,
                      ready_timeout: float, poll_seconds: float, progress: Progress = _noop,
                      clock: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], None] = time.sleep) -> str:
    """SendCommand AWS-RunShellScript with the full stdout/stderr written to S3 by the SSM agent
    (the API returns only the first 24,000 characters). A fresh instance's agent needs a minute or
    two to register: InvalidInstanceId is retried until `ready_timeout`. Returns the command id."""
    deadline = clock() + ready_timeout
    announced = False
    while True:
        try:
            return ssm.send_command(
                InstanceIds=[instance_id], DocumentName="AWS-RunShellScript", Comment=comment[:100],
                Parameters={"commands": [script], "executionTimeout": [str(execution_timeout)]},
                TimeoutSeconds=max(30, min(2592000, int(ready_timeout))),
                OutputS3BucketName=output_bucket, OutputS3KeyPrefix=output_prefix,
                OutputS3Region=output_region)["Command"]["CommandId"]
        except ClientError as e:
            if _error_code(e) != "InvalidInstanceId" or clock() >= deadline:
                if _error_code(e) == "InvalidInstanceId":
                    raise CommandError(
                        f"instance {instance_id} is not managed by SSM after {ready_timeout / 60:g} "
                        f"minutes: its instance profile needs AmazonSSMManagedInstanceCore and the "
                        f"subnet needs a route to the SSM endpoints") from None
                raise
            if not announced:
                progress(f"waiting for the SSM agent on {instance_id} to register")
                announced = True
            sleep(min(poll_seconds, max(0.0, deadline - clock())))


def wait_command(ssm, command_id: str, instance_id: str, timeout: float, poll_seconds: float) -> dict[str, Any]:
    """Wait (boto3 `command_executed` waiter) for the command on the instance; return the
    invocation. CommandError with the status and the tail of stderr when it did not succeed."""
    try:
        ssm.get_waiter("command_executed").wait(CommandId=command_id, InstanceId=instance_id,
                                                WaiterConfig=_waiter_config(timeout, poll_seconds))
    except WaiterError:
        pass  # the invocation below says why (Failed, TimedOut, Cancelled, or still running)
    invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    if invocation.get("Status") != "Success":
        err = (invocation.get("StandardErrorContent") or "").strip().splitlines()
        raise CommandError(f"SSM command {command_id} on {instance_id} ended {invocation.get('Status')} "
                           f"(exit {invocation.get('ResponseCode')}): {err[-1] if err else 'no stderr'}")
    return invocation


# --- S3 (where the SSM agent put the command output) ----------------------------------------------------

def keys_under(s3, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


def command_output_key(s3, bucket: str, prefix: str, stream: str = "stdout") -> Optional[str]:
    """The stdout (or stderr) object the SSM agent wrote under `prefix` (layout
    <prefix>/<command-id>/<instance-id>/awsrunShellScript/0.awsrunShellScript/stdout)."""
    found = [k for k in keys_under(s3, bucket, prefix) if k.endswith("/" + stream)]
    return found[0] if found else None


def last_line(s3, bucket: str, key: str) -> str:
    """The last non-empty line of a (small) text object, e.g. the script's stderr."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", errors="replace")
    lines = [line for line in body.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def download(s3, bucket: str, key: str, path: str) -> None:
    s3.download_file(bucket, key, path)   # s3transfer: ranged, retried, multi-threaded


def delete_prefix(s3, bucket: str, prefix: str) -> int:
    """Delete the current objects under `prefix` (the run's own output). Only delete markers are
    written: the dump bucket's policy denies DeleteObjectVersion to everyone, so the noncurrent
    versions stay until a lifecycle rule expires them; they hold only ciphertext whose key died
    with the run. Returns how many objects were deleted."""
    keys = keys_under(s3, bucket, prefix)
    for start in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]],
                                                 "Quiet": True})
    return len(keys)


# --- the script the helper runs (section 6.2) -----------------------------------------------------------

BEGIN_MARK = "QUICKPORT-RESTORE-BEGIN"
END_MARK = "QUICKPORT-RESTORE-END"
SHA_MARK = "QUICKPORT-RESTORE-SHA256"
KEY_MARK = "QUICKPORT-RESTORE-KEY"
# openssl enc -pbkdf2 parameters; the archive key is random, so the iteration count only has to match.
PBKDF2_ITERATIONS = 100_000

_SCRIPT = r"""#!/bin/bash
# quickport-backup restore-files: mount the restored volume read-only, pack the wanted paths, encrypt
# them to the operator's one-time public key and print them base64 between markers (the SSM agent
# saves stdout to S3; SSM command history keeps its first 24,000 characters, hence the encryption).
# Diagnostics on stderr.
set -euo pipefail
umask 077
SERIAL={serial}
DEVICE_HINT={device}
PATHS=({paths})
MNT=$(mktemp -d /mnt/quickport-restore.XXXXXX)
WORK=$(mktemp -d /var/tmp/quickport-restore.XXXXXX)
cleanup() {{ umount "$MNT" 2>/dev/null || true; rmdir "$MNT" 2>/dev/null || true; rm -rf "$WORK"; }}
trap cleanup EXIT
cat > "$WORK/operator.pem" <<'PEM'
{public_pem}PEM

# Nitro instances expose EBS volumes as NVMe disks whose serial is the volume id without its hyphen;
# Xen instances use the requested device name (sdX may appear as xvdX).
dev=""
for _ in $(seq 1 60); do
  dev=$(lsblk -dnpo NAME,SERIAL | awk -v s="$SERIAL" '$2 == s {{ print $1; exit }}')
  if [ -z "$dev" ]; then
    for d in "$DEVICE_HINT" "/dev/xvd${{DEVICE_HINT#/dev/sd}}"; do
      if [ -b "$d" ]; then dev=$(readlink -f "$d"); break; fi
    done
  fi
  [ -n "$dev" ] && break
  sleep 2
done
[ -n "$dev" ] || {{ echo "restored volume (serial $SERIAL) did not appear as a block device" >&2; exit 3; }}

# The root filesystem: the largest ext4 or xfs filesystem on the disk (the disk itself or a partition).
read -r part fstype < <(lsblk -bnplo NAME,FSTYPE,SIZE "$dev" \
  | awk '$2 == "ext4" || $2 == "xfs" {{ print $3, $1, $2 }}' | sort -n | tail -1 | cut -d' ' -f2-) || true
[ -n "${{part:-}}" ] || {{ echo "no ext4 or xfs filesystem on $dev" >&2; exit 3; }}

# Read-only. The journal is replayed into this throwaway copy when possible (consistent files);
# if that fails, mount without replaying it. xfs also needs nouuid: the helper's own root filesystem
# may carry the same UUID (same image).
case "$fstype" in
  xfs)  opts=ro,nouuid;  fallback=ro,nouuid,norecovery ;;
  ext4) opts=ro;         fallback=ro,noload ;;
esac
if ! mount -t "$fstype" -o "$opts" "$part" "$MNT"; then
  echo "mount -o $opts failed; retrying with $fallback" >&2
  mount -t "$fstype" -o "$fallback" "$part" "$MNT"
fi
echo "mounted $part ($fstype) read-only at $MNT" >&2

missing=()
rel=()
for p in "${{PATHS[@]}}"; do
  if [ -e "$MNT$p" ] || [ -L "$MNT$p" ]; then rel+=("${{p#/}}"); else missing+=("$p"); fi
done
if [ "${{#missing[@]}}" -gt 0 ]; then
  echo "not in the snapshot: ${{missing[*]}}" >&2
  exit 4
fi

tar -C "$MNT" -czf "$WORK/files.tar.gz" -- "${{rel[@]}}"
echo "packed $(du -h "$WORK/files.tar.gz" | cut -f1): $(tar -tzf "$WORK/files.tar.gz" | wc -l) entries" >&2
# A random one-time passphrase (in a file: never on a command line) encrypts the archive; only its
# RSA-OAEP encryption to the operator's key leaves the helper.
openssl rand -hex 32 | tr -d '\n' > "$WORK/pass"
openssl enc -aes-256-cbc -pbkdf2 -iter {iterations} -md sha256 -salt -pass "file:$WORK/pass" \
  -in "$WORK/files.tar.gz" -out "$WORK/files.enc"
echo "{key_mark} $(openssl pkeyutl -encrypt -pubin -inkey "$WORK/operator.pem" -pkeyopt rsa_padding_mode:oaep \
  -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -in "$WORK/pass" | base64 -w 0)"
echo "{sha_mark} $(sha256sum "$WORK/files.tar.gz" | cut -d' ' -f1)"
echo "{begin}"
base64 -w 76 "$WORK/files.enc"
echo "{end}"
"""


def new_transport_key():
    """A one-time RSA key pair for one restore: the helper encrypts to its public half; the private
    half lives only in this process's memory."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


def public_pem(private_key) -> str:
    from cryptography.hazmat.primitives import serialization
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def restore_files_script(volume_id: str, device: str, paths: list[str], operator_public_pem: str) -> str:
    """The bash script the helper runs for `paths` on the volume attached as `device`."""
    return _SCRIPT.format(serial=shlex.quote(volume_id.replace("-", "")), device=shlex.quote(device),
                          paths=" ".join(shlex.quote(p) for p in paths), public_pem=operator_public_pem,
                          iterations=PBKDF2_ITERATIONS, key_mark=KEY_MARK, sha_mark=SHA_MARK,
                          begin=BEGIN_MARK, end=END_MARK)


def _marked(lines: list[str], mark: str) -> Optional[str]:
    values = [line.split(None, 1)[1].strip() for line in lines if line.startswith(mark + " ")]
    return values[-1] if values else None


def decode_restore_output(text: str, private_key) -> bytes:
    """The tar.gz bytes from the script's stdout: decrypt (RSA-OAEP-SHA256 passphrase, then the
    `openssl enc -aes-256-cbc -pbkdf2` format: 'Salted__', 8-byte salt, ciphertext) and check the
    sha256. CommandError when markers, decryption or checksum disagree."""
    from cryptography.hazmat.primitives import hashes, padding as block_padding
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    lines = text.splitlines()
    try:
        begin, end = lines.index(BEGIN_MARK), lines.index(END_MARK)
    except ValueError:
        raise CommandError("the helper's output has no restore archive (markers missing)") from None
    wrapped, expected = _marked(lines[:begin], KEY_MARK), _marked(lines[:begin], SHA_MARK)
    if not wrapped or not expected:
        raise CommandError("the helper's output lacks the archive key or checksum")
    try:
        passphrase = private_key.decrypt(base64.b64decode(wrapped), padding.OAEP(
            mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
        blob = base64.b64decode("".join(lines[begin + 1:end]), validate=True)
        if blob[:8] != b"Salted__":
            raise ValueError("not an openssl salted archive")
        key_iv = PBKDF2HMAC(algorithm=hashes.SHA256(), length=48, salt=blob[8:16],
                            iterations=PBKDF2_ITERATIONS).derive(passphrase)
        decryptor = Cipher(algorithms.AES(key_iv[:32]), modes.CBC(key_iv[32:])).decryptor()
        padded = decryptor.update(blob[16:]) + decryptor.finalize()
        unpadder = block_padding.PKCS7(128).unpadder()
        data = unpadder.update(padded) + unpadder.finalize()
    except ValueError as e:
        raise CommandError(f"the restore archive could not be decrypted: {e}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise CommandError(f"the restore archive is damaged: sha256 {digest}, the helper reported {expected}")
    return data
