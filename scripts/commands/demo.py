"""`backupctl demo`: the whole discipline on a laptop, against an in-process AWS emulator.

Starts moto in server mode on a free local port, points this process (only) at it through the
standard AWS_ENDPOINT_URL with fake credentials, builds a stand-in production instance, and runs the
real subcommands through `scripts.cli.main`, narrating each step. Never reaches real AWS: every
endpoint, credential and config-file variable is replaced for the duration and restored after.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import yaml

from components.config import stack_file
from scripts.common import EXIT_FAILED, EXIT_OK, Context, add_common_options, utcnow

REGION = "ap-south-1"
FAKE_ENV = {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo", "AWS_SESSION_TOKEN": "demo",
            "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}
# A Linux AMI moto ships whose root device is /dev/sda1 (moto attaches the root volume there).
STAND_IN_AMI = "ami-785db401"
ROOT_VOLUME_GB = 30
ACTION = "demo-maintenance"
GUARD_ACTION = "demo-nginx-config"
# Checks the emulator can answer: against the arranged account they must be ok. The rest (APIs
# moto lacks, and the database dump the demo does not make) are expected to be not ok.
AUDIT_EXPECTED_OK = ("backup-plan", "vault-lock", "dump-bucket-versioning", "dump-bucket-public-access",
                     "dump-bucket-encryption")

HELP = """\
A one-minute tour of the strategy on an in-process AWS emulator (moto; no AWS account, nothing
leaves this machine). It creates a stand-in production instance (root volume, Elastic IP), the backup
vault, plan and dump bucket, writes a temporary stack config, then runs:
  1 snapshot --action demo-maintenance      pre-maintenance snapshot + section 8 checklist
  2 verify <that snapshot>                  the checklist again, on demand
  3 guard --action demo-nginx-config -- <harmless command>
  4 list                                    the strategy's snapshots
  5 restore-instance --method detach        the plan only (no --yes): nothing changes
  6 restore-instance --method detach --yes  the six steps, safety snapshot first
  7 audit                                   FAIL / could-not-check where the emulator lacks an API
  8 cost                                    the monthly estimate from the stand-in's volume
Exit 0 when every step behaved as expected, 1 otherwise."""


@dataclass
class Step:
    number: int
    title: str
    argv: list[str]
    expected_exit: int
    exit_code: Optional[int] = None
    ok: bool = False
    seconds: float = 0.0
    note: str = ""


@dataclass
class StandIn:
    instance_id: str
    root_volume_id: str
    allocation_id: str
    public_ip: str
    config_file: Path
    log_file: Path
    extra: dict[str, Any] = field(default_factory=dict)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole discipline against an in-process AWS emulator", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keep-dir", type=Path, default=None,
                   help="write the demo's stack config and operations log here and keep them (default: a temp dir)")
    add_common_options(p, aws=False)
    p.set_defaults(handler=run_demo)


# --- the emulator -------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def emulator(workdir: Path) -> Iterator[str]:
    """moto in server mode; this process's AWS settings point at it until the block ends."""
    from moto.server import ThreadedMotoServer
    import logging
    # The emulator logs a traceback for every API it lacks; the narration reports those instead.
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # Every AWS_* setting (per-service endpoints, profiles, config files, role or container
    # credentials) is set aside so nothing can route a call elsewhere, then put back as it was.
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    try:
        for key in saved:
            del os.environ[key]
        os.environ.update(FAKE_ENV)
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        os.environ["AWS_CONFIG_FILE"] = str(workdir / "aws-config")          # absent: no profile leaks in
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(workdir / "aws-credentials")
        yield endpoint
    finally:
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[key]
        os.environ.update(saved)
        server.stop()


# --- arranging the stand-in account -------------------------------------------------------------

def arrange(workdir: Path, log_file: Path, say: Callable[[str], None]) -> StandIn:
    """What `pulumi up` and the real server would have left, made with boto3 in the emulator."""
    import boto3
    session = boto3.session.Session()  # fresh: reads the emulator's environment, not a cached one
    ec2 = session.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
    instance_id = ec2.run_instances(
        ImageId=STAND_IN_AMI, MinCount=1, MaxCount=1, InstanceType="t3.medium", SubnetId=subnet,
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": ROOT_VOLUME_GB, "VolumeType": "gp3"}}],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "quickport-prod (demo)"}]}],
    )["Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[instance_id], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    root = next(m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]
                if m["DeviceName"] == instance["RootDeviceName"])
    address = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(InstanceId=instance_id, AllocationId=address["AllocationId"])
    say(f"instance {instance_id} (root {root}, {ROOT_VOLUME_GB} GiB gp3, device {instance['RootDeviceName']}), "
        f"Elastic IP {address['PublicIp']} ({address['AllocationId']})")

    raw = yaml.safe_load(stack_file("prod").read_text())
    cfg = raw["config"]
    cfg["quickport-backup:instanceId"] = instance_id
    cfg["quickport-backup:rootVolumeId"] = root
    cfg["quickport-backup:elasticIpAllocationId"] = address["AllocationId"]
    cfg.pop("quickport-backup:baselines", None)  # the demo's own snapshot becomes the baseline before audit
    backup_cfg, dumps_cfg = cfg["quickport-backup:backup"], cfg["quickport-backup:dumps"]

    backup = session.client("backup", region_name=REGION)
    vault = backup_cfg["vaultName"]
    backup.create_backup_vault(BackupVaultName=vault)
    lock = backup_cfg["vaultLock"]
    backup.put_backup_vault_lock_configuration(BackupVaultName=vault, MinRetentionDays=lock["minRetentionDays"],
                                               MaxRetentionDays=lock["maxRetentionDays"])
    backup.create_backup_plan(BackupPlan={"BackupPlanName": backup_cfg["planName"], "Rules": [{
        "RuleName": "daily", "TargetBackupVaultName": vault, "ScheduleExpression": backup_cfg["schedule"],
        "Lifecycle": {"DeleteAfterDays": backup_cfg["retentionDays"]}}]})
    say(f"backup vault {vault} (locked, {lock['minRetentionDays']}..{lock['maxRetentionDays']} days), "
        f"plan {backup_cfg['planName']} ({backup_cfg['schedule']}, {backup_cfg['retentionDays']} days)")

    s3 = session.client("s3", region_name=REGION)
    bucket = dumps_cfg["bucketName"]
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    key_id = session.client("kms", region_name=REGION).create_key(Description="demo dump bucket key")["KeyMetadata"]["Arn"]
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_id},
        "BucketKeyEnabled": True}]})
    say(f"dump bucket {bucket} (versioned, public access blocked, SSE-KMS)")

    config_file = workdir / "Pulumi.demo.yaml"
    config_file.write_text("# written by `backupctl demo`: a stand-in stack in the local emulator\n"
                           + yaml.safe_dump(raw, sort_keys=False))
    return StandIn(instance_id, root, address["AllocationId"], address["PublicIp"], config_file, log_file)


def add_baseline(stand_in: StandIn, name: str) -> None:
    """Name the demo's snapshot as the stack's baseline, so audit checks a real one."""
    raw = yaml.safe_load(stand_in.config_file.read_text())
    raw["config"]["quickport-backup:baselines"] = [
        {"name": name, "volumeId": stand_in.root_volume_id, "lock": {"mode": "governance", "days": 30}}]
    stand_in.config_file.write_text(yaml.safe_dump(raw, sort_keys=False))


def _root_and_eip(instance_id: str) -> tuple[str, Optional[str], str]:
    import boto3
    from scripts import ec2ops
    ec2 = boto3.session.Session().client("ec2", region_name=REGION)
    instance = ec2ops.describe_instance(ec2, instance_id)
    eip = ec2ops.elastic_ip(ec2, instance_id)
    return ec2ops.root_volume_id(instance), eip and eip.get("AllocationId"), instance["State"]["Name"]


def answered_ec2_client(answers: dict[str, dict[str, Any]]):
    """An EC2 client on the emulator that answers the given operations (boto3 method names) itself,
    every time, with a response validated against the EC2 service model as botocore's Stubber does;
    every other call reaches the emulator. Only for APIs moto lacks, and only with the answer that is
    true of the demo's fresh account (e.g. no replace-root-volume task running)."""
    import boto3
    from botocore.awsrequest import AWSResponse
    from botocore.validate import validate_parameters

    client = boto3.session.Session().client("ec2", region_name=REGION)
    fixed: dict[str, dict[str, Any]] = {}
    for method, response in answers.items():
        operation = client.meta.method_to_api_mapping[method]
        validate_parameters(response, client.meta.service_model.operation_model(operation).output_shape)
        fixed[operation] = response

    def answer(model, **_):
        # A before-call handler that returns (http response, parsed) skips the request.
        if model.name in fixed:
            return AWSResponse(None, 200, {}, None), copy.deepcopy(fixed[model.name])
        return None

    client.meta.events.register("before-call.ec2.*", answer)
    return client


@contextlib.contextmanager
def _fd1_to_stderr(active: bool) -> Iterator[None]:
    """With --json, also child processes (guard's command) must not write into the JSON on fd 1."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


# --- running the steps --------------------------------------------------------------------------

def _run(step: Step, stand_in: StandIn, quiet: bool, say: Callable[[str], None],
         clients: Optional[dict[str, Any]] = None) -> Optional[dict]:
    """One real subcommand in this process. With quiet (--json), its stdout goes to stderr so the
    demo's own stdout stays one document; with --json in its argv, its document is returned."""
    from scripts import cli
    common = ["--config-file", str(stand_in.config_file), "--log-file", str(stand_in.log_file)]
    cut = step.argv.index("--") if "--" in step.argv else len(step.argv)  # guard's command stays last
    argv = [*step.argv[:cut], *common, *step.argv[cut:]]
    say(f"$ backupctl {' '.join(step.argv)}")
    captured = io.StringIO()
    started = time.monotonic()
    wants_json = "--json" in step.argv
    with _fd1_to_stderr(quiet), \
            contextlib.redirect_stdout(captured if wants_json else (sys.stderr if quiet else sys.stdout)):
        try:
            step.exit_code = cli.main(argv, clients=clients)
        except SystemExit as e:  # argparse usage errors
            step.exit_code = int(e.code or 0)
    step.seconds = round(time.monotonic() - started, 1)
    step.ok = step.exit_code == step.expected_exit
    if wants_json:
        # moto prints a line to stdout for each request to a service it lacks (rbin): skip to the document
        text = captured.getvalue()
        start = text.find("{\n")
        try:
            return json.loads(text[start:]) if start >= 0 else None
        except ValueError:
            print(text, file=sys.stderr)
            return None
    return None


def run_demo(ctx: Context) -> int:
    quiet = ctx.json
    out = sys.stderr if quiet else sys.stdout

    def say(message: str) -> None:
        print(message, file=out, flush=True)

    def heading(step: Step, why: str) -> None:
        say(f"\n== {step.number}. {step.title}\n   {why}")

    keep = ctx.args.keep_dir
    temp = None if keep else tempfile.TemporaryDirectory(prefix="quickport-demo-")
    workdir = Path(keep or temp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    log_file = ctx.args.log_file or workdir / "operations.jsonl"
    today = utcnow().date().isoformat()
    snapshot_name = f"prod-root-{today}-before-{ACTION}"
    steps: list[Step] = []
    started = time.monotonic()
    try:
        say("== 0. An AWS emulator in this process, and a stand-in production account")
        with emulator(workdir) as endpoint:
            say(f"   moto server at {endpoint}; AWS_ENDPOINT_URL and fake credentials set for this process only")
            stand_in = arrange(workdir, log_file, lambda m: say("   " + m))
            say(f"   stack config {stand_in.config_file}; operations log {stand_in.log_file}")

            s = Step(1, "snapshot before maintenance", ["snapshot", "--action", ACTION], EXIT_OK)
            heading(s, "Seed 3.1 + 8: snapshot the root volume, wait for completed, run the checklist.")
            _run(s, stand_in, quiet, say)
            steps.append(s)

            s = Step(2, "verify the snapshot", ["verify", snapshot_name], EXIT_OK)
            heading(s, "Seed 8: the checklist again, any time (volume is still the current root, EIP noted).")
            _run(s, stand_in, quiet, say)
            steps.append(s)

            marker = workdir / "maintenance-ran"
            s = Step(3, "guard a maintenance command",
                     ["guard", "--action", GUARD_ACTION, "--", sys.executable, "-c",
                      f"open({str(marker)!r}, 'w').write('ok'); print('maintenance command ran')"], EXIT_OK)
            heading(s, "The command runs only after its snapshot passed the checklist.")
            _run(s, stand_in, quiet, say)
            if s.ok and not marker.exists():
                s.ok, s.note = False, "guard exited 0 but the command did not run"
            steps.append(s)

            s = Step(4, "list the strategy's snapshots", ["list"], EXIT_OK)
            heading(s, "Locks show 'unknown': the emulator has no DescribeLockedSnapshots.")
            _run(s, stand_in, quiet, say)
            steps.append(s)

            # moto lacks DescribeReplaceRootVolumeTasks, which restore-instance reads to refuse a
            # second restore; the true answer for this fresh account is "none".
            no_tasks = {"describe_replace_root_volume_tasks": {"ReplaceRootVolumeTasks": []}}
            before = _root_and_eip(stand_in.instance_id)
            s = Step(5, "restore plan (no --yes)",
                     ["restore-instance", "--snapshot", snapshot_name, "--method", "detach"], EXIT_OK)
            heading(s, "Seed 6.1: print every step with ids; change nothing. (The emulator lacks "
                       "DescribeReplaceRootVolumeTasks; the demo answers it 'none running'.)")
            _run(s, stand_in, quiet, say, {"ec2": answered_ec2_client(no_tasks)})
            if s.ok and _root_and_eip(stand_in.instance_id) != before:
                s.ok, s.note = False, "the plan changed the instance"
            steps.append(s)

            s = Step(6, "restore the instance from the snapshot",
                     ["restore-instance", "--snapshot", snapshot_name, "--method", "detach", "--yes",
                      "--poll-seconds", "1"], EXIT_OK)
            heading(s, "Seed 6.1, the detach method (moto has no replace-root-volume tasks): safety snapshot, "
                       "stop, swap the root, start, re-associate the Elastic IP.")
            _run(s, stand_in, quiet, say, {"ec2": answered_ec2_client(no_tasks)})
            after = _root_and_eip(stand_in.instance_id)
            if s.ok and not (after[0] != before[0] and after[1] == stand_in.allocation_id and after[2] == "running"):
                s.ok, s.note = False, f"after restore: root {after[0]}, EIP {after[1]}, state {after[2]}"
            elif s.ok:
                s.note = f"root {before[0]} -> {after[0]}; Elastic IP still {after[1]}; running"
            steps.append(s)

            add_baseline(stand_in, snapshot_name)
            s = Step(7, "audit the account", ["audit", "--json"], EXIT_FAILED)
            heading(s, "Seed 9. Expected: ok where the emulator answers; could-not-check where it lacks the "
                       "API (recovery points, vault policy, Recycle Bin, snapshot locks, block public "
                       "access); FAIL for the database dump the demo never made. Exit 1.")
            doc = _run(s, stand_in, True, say)
            if doc is None:
                s.ok, s.note = False, "audit printed no JSON document"
            else:
                from scripts.commands.audit import Check, render_table
                say(render_table([Check(**c) for c in doc["checks"]]))
                not_ok = [c["name"] for c in doc["checks"] if c["name"] in AUDIT_EXPECTED_OK and c["status"] != "ok"]
                if not_ok:
                    s.ok, s.note = False, "expected ok: " + ", ".join(not_ok)
                else:
                    s.note = "emulator-backed checks ok; the rest reported honestly"
            steps.append(s)

            s = Step(8, "monthly cost", ["cost"], EXIT_OK)
            heading(s, "Seed 10: from the stand-in's real volume size, with the documented prices.")
            _run(s, stand_in, quiet, say)
            steps.append(s)
        ok = all(s.ok for s in steps) and len(steps) == 8
        elapsed = round(time.monotonic() - started, 1)
        # The demo's own line goes to the demo's log, never to the real operations log.
        ctx.args.log_file = log_file
        ctx.log("demo", ok=ok, seconds=elapsed,
                steps=[{"step": s.title, "exit": s.exit_code, "ok": s.ok} for s in steps])
    finally:
        if temp is not None:
            temp.cleanup()

    width = max(len(s.title) for s in steps) if steps else 10
    summary = ["", f"== Demo {'passed' if ok else 'FAILED'} in {elapsed} s"] + [
        f"   {'ok  ' if s.ok else 'FAIL'} {s.number}. {s.title:<{width}}  exit {s.exit_code} "
        f"(expected {s.expected_exit}), {s.seconds} s" + (f"  {s.note}" if s.note else "") for s in steps]
    if keep:
        summary.append(f"   stack config and operations log kept in {workdir}")
    if quiet:
        print("\n".join(summary), file=sys.stderr)
    ctx.emit({"ok": ok, "seconds": elapsed, "steps": [asdict(s) for s in steps]}, "\n".join(summary))
    return EXIT_OK if ok else EXIT_FAILED
