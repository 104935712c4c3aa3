"""Section 6.2: copy single files or directories out of an EBS snapshot without touching production.

A temporary volume from the snapshot is attached to a helper instance, which (through SSM Run
Command) mounts it read-only, packs the paths, encrypts them to a one-time key held only by this
process and hands them back through the dump bucket; they are unpacked into a new directory.
Everything the run created is deleted afterwards, also when a step fails; nothing else is.
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import shlex
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from components.naming import RESTORES_PREFIX
from components.tags import RESTORE_RUN_TAG, RESTORED_FROM_TAG
from scripts.aws import ec2 as ec2api
from scripts.aws import s3 as s3api
from scripts.aws import ssm as ssmapi
from scripts.errors import CommandError
from scripts.oplog import operation
from scripts.workflows.base import Session
from scripts.workflows.restore_instance import RESTORE_FAILURES, failure_message, resolve_snapshot


@dataclass
class FilesPlan:
    instance_id: str
    availability_zone: str
    subnet_id: str
    snapshot: dict[str, Any]
    paths: list[str]
    destination: Path
    bucket: str
    output_prefix: str
    helper_id: Optional[str]            # --attach-to; None: launch one
    helper_ami: Optional[str]
    helper_type: str
    helper_profile: Optional[dict[str, str]]
    security_groups: list[str]
    region: str
    steps: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance_id, "availabilityZone": self.availability_zone, "subnet": self.subnet_id,
                "snapshot": {"id": self.snapshot["SnapshotId"], "name": ec2api.tags_of(self.snapshot).get("Name"),
                             "sizeGiB": self.snapshot.get("VolumeSize"), "state": self.snapshot.get("State")},
                "paths": self.paths, "to": str(self.destination), "bucket": self.bucket,
                "outputPrefix": self.output_prefix, "attachTo": self.helper_id,
                "helper": None if self.helper_id else {"ami": self.helper_ami, "type": self.helper_type,
                                                       "profile": self.helper_profile,
                                                       "securityGroups": self.security_groups},
                "steps": self.steps, "blockers": self.blockers, "region": self.region}


@dataclass(frozen=True)
class FilesRequest:
    """A checked request: the command layer validated every field."""
    instance_id: str
    snapshot_ref: str
    paths: list[str]
    destination: Path
    bucket: str
    attach_to: Optional[str] = None
    helper_ami: Optional[str] = None
    helper_type: str = "t3.micro"
    helper_profile: Optional[str] = None
    security_groups: tuple[str, ...] = ()


def build_files_plan(session: Session, request: FilesRequest, run_id: str) -> FilesPlan:
    """Read-only: every step with ids, and what blocks it."""
    ec2 = session.client("ec2")
    iid = request.instance_id
    snapshot = resolve_snapshot(ec2, request.snapshot_ref)
    prod = ec2api.describe_instance(ec2, iid)
    profile = ({"Name": request.helper_profile} if request.helper_profile
               else ({"Arn": prod["IamInstanceProfile"]["Arn"]} if prod.get("IamInstanceProfile") else None))
    plan = FilesPlan(
        instance_id=iid, availability_zone=prod["Placement"]["AvailabilityZone"], subnet_id=prod.get("SubnetId", ""),
        snapshot=snapshot, paths=request.paths, destination=request.destination, bucket=request.bucket,
        output_prefix=f"{RESTORES_PREFIX}/{run_id}", helper_id=request.attach_to,
        helper_ami=request.helper_ami or prod.get("ImageId"), helper_type=request.helper_type,
        helper_profile=profile, security_groups=list(request.security_groups), region=session.region)
    sid, az = snapshot["SnapshotId"], plan.availability_zone
    if snapshot.get("State") != "completed":
        plan.blockers.append(f"snapshot {sid} is {snapshot.get('State')}, not completed")
    plan.steps.append(f"create a temporary volume from {sid} ({snapshot.get('VolumeSize')} GiB) in {az}; "
                      f"wait until available")
    if request.attach_to:
        helper = ec2api.describe_instance(ec2, request.attach_to)
        if request.attach_to == iid:
            plan.blockers.append(f"--attach-to {iid} is the production instance: use a separate helper")
        if helper["Placement"]["AvailabilityZone"] != az:
            plan.blockers.append(f"--attach-to {request.attach_to} is in {helper['Placement']['AvailabilityZone']}, "
                                 f"the volume must be in {az} (the production instance's AZ)")
        if helper["State"]["Name"] != "running":
            plan.blockers.append(f"--attach-to {request.attach_to} is {helper['State']['Name']}, not running")
        plan.steps.append(f"attach it to the existing helper {request.attach_to} at {ec2api.free_device_name(helper)}")
    else:
        if plan.helper_ami and ec2api.describe_image(ec2, plan.helper_ami) is None:
            plan.blockers.append(f"helper AMI {plan.helper_ami} does not exist (any more) in {session.region}; give "
                                 f"--helper-ami (a current Amazon Linux or Ubuntu AMI with the SSM agent)")
        if not profile:
            plan.blockers.append(f"{iid} has no instance profile to lend the helper; give --helper-profile "
                                 f"(an instance profile with AmazonSSMManagedInstanceCore and s3:PutObject "
                                 f"on {plan.bucket}/restores/*)")
        if not plan.subnet_id:
            plan.blockers.append(f"{iid} has no subnet (not in a VPC); use --attach-to")
        plan.steps.append(
            f"launch a temporary helper: {plan.helper_type} from {plan.helper_ami} in {plan.subnet_id} ({az}), "
            f"instance profile {next(iter(profile.values())) if profile else '?'}, "
            f"security groups {', '.join(plan.security_groups) or 'the VPC default'}; wait until running")
        plan.steps.append("attach the temporary volume to the helper at /dev/sdf")
    plan.steps += [
        "through SSM Run Command: find the volume's device, mount it read-only, pack the paths and encrypt "
        "them to a one-time key held only by this command",
        f"the SSM agent saves the output in s3://{plan.bucket}/{plan.output_prefix}/; download, decrypt, check "
        f"sha256, unpack into {plan.destination}/",
        "clean up (also after a failure): "
        + ("terminate the helper (its root volume goes with it), " if not request.attach_to else
           f"detach the temporary volume from {request.attach_to}, ")
        + f"delete the temporary volume, delete the output objects under s3://{plan.bucket}/{plan.output_prefix}/; "
        "nothing else is deleted",
    ]
    return plan


@dataclass
class Created:
    """Everything this run created: the only things cleanup may delete."""
    volume_id: Optional[str] = None
    helper_id: Optional[str] = None
    attached_to: Optional[str] = None
    device: Optional[str] = None


def _cleanup(ec2, s3, plan: FilesPlan, created: Created, timeout: float, poll: float,
             progress: Callable[[str], None]) -> list[str]:
    """Delete what the run created; returns the commands for whatever could not be cleaned up."""
    r = f"--region {plan.region}"
    leftovers: list[str] = []
    if created.helper_id:
        try:
            progress(f"cleanup: terminating the helper {created.helper_id}")
            ec2api.terminate_instance(ec2, created.helper_id, timeout, poll)
            created.attached_to = None   # a terminated instance releases its volumes
        except RESTORE_FAILURES as e:
            progress(f"cleanup: {failure_message(e)}")
            leftovers.append(f"aws ec2 terminate-instances --instance-ids {created.helper_id} {r}")
    if created.volume_id:
        try:
            if created.attached_to:
                progress(f"cleanup: detaching {created.volume_id} from {created.attached_to}")
                ec2api.detach_volume(ec2, created.volume_id, created.attached_to, str(created.device))
            ec2api.wait_volume_available(ec2, created.volume_id, timeout, poll)
            progress(f"cleanup: deleting the temporary volume {created.volume_id}")
            ec2api.delete_volume(ec2, created.volume_id)
        except RESTORE_FAILURES as e:
            progress(f"cleanup: {failure_message(e)}")
            if created.attached_to:
                leftovers.append(f"aws ec2 detach-volume --volume-id {created.volume_id} "
                                 f"--instance-id {created.attached_to} {r}")
            leftovers.append(f"aws ec2 delete-volume --volume-id {created.volume_id} {r}")
    try:
        removed = s3api.delete_prefix(s3, plan.bucket, plan.output_prefix + "/")
        if removed:
            progress(f"cleanup: deleted {removed} output object(s) under s3://{plan.bucket}/{plan.output_prefix}/")
    except RESTORE_FAILURES as e:
        # Not a leftover that fails the run: the output is ciphertext whose key is gone.
        progress(f"cleanup: warning: could not delete s3://{plan.bucket}/{plan.output_prefix}/ "
                 f"({failure_message(e)}); it holds only encrypted output of this run")
    return leftovers


def _unpack(archive: bytes, destination: Path) -> list[str]:
    """Unpack into a sibling temporary directory, then rename: the destination appears complete or not
    at all. The 'data' filter refuses absolute paths, '..', devices and links leaving the tree."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.partial-", dir=destination.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            names = tar.getnames()
            tar.extractall(staging, filter="data")
        if destination.exists():
            destination.rmdir()   # only ever an empty directory (checked in the plan)
        os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return names



# --- the script the helper runs ------------------------------------------------------------------------

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
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import padding as block_padding
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


# --- executing the plan ----------------------------------------------------------------------------------

@dataclass
class FilesRestore:
    run_id: str
    plan: FilesPlan
    created: Created
    restored: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.leftovers

    def to_json(self) -> dict[str, Any]:
        doc = {"executed": True, "runId": self.run_id, "ok": self.ok, "restored": self.restored,
               "to": str(self.plan.destination), "created": vars(self.created), "leftovers": self.leftovers,
               "seconds": self.seconds, "plan": self.plan.to_json()}
        if self.error is not None:
            doc["error"] = self.error
        return doc


def _helper_for(session: Session, ec2, plan: FilesPlan, run: FilesRestore, tags: dict[str, str]) -> str:
    """The --attach-to instance, or a temporary helper launched for this run."""
    if plan.helper_id:
        return plan.helper_id
    image = ec2api.describe_image(ec2, plan.helper_ami) if plan.helper_ami else None
    if image is None:
        raise CommandError(f"helper AMI {plan.helper_ami} not found (give --helper-ami)")
    session.progress(f"launching the temporary helper ({plan.helper_type}, {plan.helper_ami})")
    run.created.helper_id = helper_id = ec2api.run_helper_instance(
        ec2, image_id=image["ImageId"], instance_type=plan.helper_type, subnet_id=plan.subnet_id,
        instance_profile=plan.helper_profile or {}, security_group_ids=plan.security_groups, image=image,
        tags={"Name": f"quickport-restore-helper-{run.run_id}", **tags})
    session.log("restore-files-helper", run_id=run.run_id, helper_id=helper_id)
    return helper_id


def _pack_on_helper(session: Session, plan: FilesPlan, run: FilesRestore, helper_id: str, device: str,
                    timeout: float, poll: float) -> bytes:
    """Through SSM: mount, pack and encrypt on the helper; fetch, decrypt and check the archive."""
    ssm, s3 = session.client("ssm"), session.client("s3")
    session.progress(f"mounting read-only and packing {len(plan.paths)} path(s) through SSM on {helper_id}")
    transport_key = new_transport_key()
    script = restore_files_script(str(run.created.volume_id), device, plan.paths, public_pem(transport_key))
    command_id = ssmapi.send_shell_script(
        ssm, helper_id, script, comment=f"quickport restore-files {run.run_id}",
        execution_timeout=max(60, int(timeout)), output_bucket=plan.bucket, output_prefix=plan.output_prefix,
        output_region=plan.region, ready_timeout=timeout, poll_seconds=poll, progress=session.progress)
    ssmapi.wait_command(ssm, command_id, helper_id, timeout, poll)
    command_prefix = f"{plan.output_prefix}/{command_id}/"
    key = s3api.command_output_key(s3, plan.bucket, command_prefix)
    if key is None:
        stderr_key = s3api.command_output_key(s3, plan.bucket, command_prefix, "stderr")
        if stderr_key:
            raise CommandError(f"the helper's script failed: {s3api.last_line(s3, plan.bucket, stderr_key)}")
        raise CommandError(f"the SSM agent wrote no output under s3://{plan.bucket}/{command_prefix}: "
                           f"the helper's instance profile needs s3:PutObject there")
    with tempfile.TemporaryDirectory(prefix="quickport-restore-") as tmp:
        local = os.path.join(tmp, "stdout")
        s3api.download(s3, plan.bucket, key, local)
        return decode_restore_output(Path(local).read_text(encoding="ascii", errors="replace"), transport_key)


def execute_files_restore(session: Session, plan: FilesPlan, run_id: str, timeout: float,
                          poll: float) -> FilesRestore:
    """Run a plan without blockers, logged as one operation (started, then finished/failed/interrupted)."""
    with operation(session.log, "restore-files", run_id=run_id, start={"plan": plan.to_json()}) as op:
        run = _execute_files_restore(session, plan, run_id, timeout, poll)
        op.end("finished", ok=run.ok, error=run.error, restored=len(run.restored), leftovers=run.leftovers,
               seconds=run.seconds)
    return run


def _execute_files_restore(session: Session, plan: FilesPlan, run_id: str, timeout: float,
                           poll: float) -> FilesRestore:
    """Run a plan without blockers; clean up whatever the run created, also after a failure."""
    ec2, s3 = session.client("ec2"), session.client("s3")
    run = FilesRestore(run_id=run_id, plan=plan, created=Created())
    started = time.monotonic()
    sid = plan.snapshot["SnapshotId"]
    tags = {RESTORE_RUN_TAG: run_id, "quickport:created-by": "backupctl restore-files", RESTORED_FROM_TAG: sid}
    try:
        session.progress(f"creating a temporary volume from {sid} in {plan.availability_zone}")
        run.created.volume_id = volume_id = ec2api.create_volume_from_snapshot(
            ec2, sid, plan.availability_zone, {"VolumeType": "gp3"},
            {"Name": f"quickport-restore-files-{run_id}", **tags})
        helper_id = _helper_for(session, ec2, plan, run, tags)
        ec2api.wait_volume_available(ec2, volume_id, timeout, poll)
        ec2api.wait_instance_running(ec2, helper_id, timeout, poll)
        device = ec2api.free_device_name(ec2api.describe_instance(ec2, helper_id))
        session.progress(f"attaching {volume_id} to {helper_id} at {device}")
        ec2api.attach_volume(ec2, volume_id, helper_id, device)
        run.created.attached_to, run.created.device = helper_id, device
        ec2api.wait_volume_in_use(ec2, volume_id, timeout, poll)
        archive = _pack_on_helper(session, plan, run, helper_id, device, timeout, poll)
        run.restored = _unpack(archive, plan.destination)
    except (RESTORE_FAILURES + (tarfile.TarError, OSError, ValueError)) as e:
        run.error = failure_message(e)
    finally:
        run.leftovers = _cleanup(ec2, s3, plan, run.created, timeout, poll, session.progress)
    run.seconds = round(time.monotonic() - started, 1)
    return run
