"""`backupctl demo`: the whole discipline on a laptop, against an in-process AWS emulator.

Starts moto in server mode on a free local port, points this process (only) at it through the
standard AWS_ENDPOINT_URL with fake credentials, builds a stand-in production instance
(scripts/offline/standin.py), and runs the real subcommands through `scripts.cli.main`, narrating
each step. Never reaches real AWS: every endpoint, credential and config-file variable is replaced
for the duration and restored after.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from components.config import load_stack_config
from scripts.commands.base import Context, add_common_options
from scripts.errors import EXIT_FAILED, EXIT_OK
from scripts.times import utcnow

ACTION = "demo-maintenance"
GUARD_ACTION = "demo-nginx-config"
ROOT_VOLUME_GB = 30
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
    why: str
    argv: list[str]
    expected_exit: int
    exit_code: Optional[int] = None
    ok: bool = False
    seconds: float = 0.0
    note: str = ""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole discipline against an in-process AWS emulator", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keep-dir", type=Path, default=None,
                   help="write the demo's stack config and operations log here and keep them (default: a temp dir)")
    add_common_options(p, aws=False)
    p.set_defaults(handler=run_demo)


# --- the stand-in account ---------------------------------------------------------------------------

@dataclass
class Tour:
    """The arranged account and the files the steps share."""
    instance_id: str
    root_volume_id: str
    allocation_id: str
    config_file: Path
    log_file: Path
    workdir: Path
    clients: dict[str, Any]


def arrange(workdir: Path, log_file: Path, say: Callable[[str], None]) -> Tour:
    """What `pulumi up` and the real server would have left, made with boto3 in the emulator."""
    from scripts.offline import standin
    from scripts.offline.stubs import PartialStubber
    stand_in = standin.build_instance(cidr="10.42.0.0/16", root_gb=ROOT_VOLUME_GB, name="quickport-prod (demo)")
    say(f"instance {stand_in.instance_id} (root {stand_in.root_volume_id}, {ROOT_VOLUME_GB} GiB gp3, device "
        f"{stand_in.root_device}), Elastic IP {stand_in.public_ip} ({stand_in.allocation_id})")
    config_file = stand_in.write_config(workdir / "Pulumi.demo.yaml",
                                        "# written by `backupctl demo`: a stand-in stack in the local emulator\n",
                                        baselines=None)  # the demo's own snapshot becomes the baseline
    cfg = load_stack_config("demo", config_file)
    b, lock = cfg.backup, cfg.backup.vault_lock
    rule = {"ScheduleExpression": b.schedule, "Lifecycle": {"DeleteAfterDays": b.retention_days}}
    standin.build_vault_and_plan(stand_in.region, b.vault_name, b.plan_name, min_days=lock.min_retention_days,
                                 max_days=lock.max_retention_days, rule=rule)
    say(f"backup vault {b.vault_name} (locked, {lock.min_retention_days}..{lock.max_retention_days} days), "
        f"plan {b.plan_name} ({b.schedule}, {b.retention_days} days)")
    standin.build_dump_bucket(stand_in.region, cfg.dumps.bucket_name)
    say(f"dump bucket {cfg.dumps.bucket_name} (versioned, public access blocked, SSE-KMS)")
    # moto lacks DescribeReplaceRootVolumeTasks, which restore-instance reads to refuse a second
    # restore; the true answer for this fresh account is "none".
    ec2 = stand_in.client("ec2")
    PartialStubber(ec2).always("describe_replace_root_volume_tasks", {"ReplaceRootVolumeTasks": []}).activate()
    return Tour(stand_in.instance_id, stand_in.root_volume_id, stand_in.allocation_id, config_file, log_file,
                workdir, {"ec2": ec2})


def add_baseline(tour: Tour, name: str) -> None:
    """Name the demo's snapshot as the stack's baseline, so audit checks a real one."""
    import yaml
    raw = yaml.safe_load(tour.config_file.read_text())
    raw["config"]["quickport-backup:baselines"] = [
        {"name": name, "volumeId": tour.root_volume_id, "lock": {"mode": "governance", "days": 30}}]
    tour.config_file.write_text(yaml.safe_dump(raw, sort_keys=False))


def _root_eip_state(tour: Tour) -> tuple[str, Optional[str], str]:
    from scripts.aws import ec2 as ec2api
    ec2 = tour.clients["ec2"]
    instance = ec2api.describe_instance(ec2, tour.instance_id)
    eip = ec2api.elastic_ip(ec2, tour.instance_id)
    return ec2api.root_volume_id(instance), eip and eip.get("AllocationId"), instance["State"]["Name"]


# --- running the steps ------------------------------------------------------------------------------

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


def _run(step: Step, tour: Tour, quiet: bool, say: Callable[[str], None]) -> Optional[dict]:
    """One real subcommand in this process. With quiet (--json), its stdout goes to stderr so the
    demo's own stdout stays one document; with --json in its argv, its document is returned."""
    from scripts import cli
    common = ["--config-file", str(tour.config_file), "--log-file", str(tour.log_file)]
    cut = step.argv.index("--") if "--" in step.argv else len(step.argv)  # guard's command stays last
    argv = [*step.argv[:cut], *common, *step.argv[cut:]]
    say(f"$ backupctl {' '.join(step.argv)}")
    captured = io.StringIO()
    started = time.monotonic()
    wants_json = "--json" in step.argv
    with _fd1_to_stderr(quiet), \
            contextlib.redirect_stdout(captured if wants_json else (sys.stderr if quiet else sys.stdout)):
        step.exit_code = cli.main(argv, clients=tour.clients)
    step.seconds = round(time.monotonic() - started, 1)
    step.ok = step.exit_code == step.expected_exit
    if not wants_json:
        return None
    text = captured.getvalue()
    start = text.find("{\n")  # moto prints a line for each request to a service it lacks: skip to the document
    try:
        return json.loads(text[start:]) if start >= 0 else None
    except ValueError:
        print(text, file=sys.stderr)
        return None


def _check_guard(step: Step, tour: Tour, doc: Optional[dict], before: Any, say: Callable[[str], None]) -> None:
    if step.ok and not (tour.workdir / "maintenance-ran").exists():
        step.ok, step.note = False, "guard exited 0 but the command did not run"


def _check_plan_changed_nothing(step: Step, tour: Tour, doc: Optional[dict], before: Any,
                                say: Callable[[str], None]) -> None:
    if step.ok and _root_eip_state(tour) != before:
        step.ok, step.note = False, "the plan changed the instance"


def _check_restored(step: Step, tour: Tour, doc: Optional[dict], before: Any, say: Callable[[str], None]) -> None:
    after = _root_eip_state(tour)
    if step.ok and not (after[0] != before[0] and after[1] == tour.allocation_id and after[2] == "running"):
        step.ok, step.note = False, f"after restore: root {after[0]}, EIP {after[1]}, state {after[2]}"
    elif step.ok:
        step.note = f"root {before[0]} -> {after[0]}; Elastic IP still {after[1]}; running"


def _check_audit(step: Step, tour: Tour, doc: Optional[dict], before: Any, say: Callable[[str], None]) -> None:
    if doc is None:
        step.ok, step.note = False, "audit printed no JSON document"
        return
    from scripts.commands.audit import render_table
    from scripts.workflows.audit import Check
    say(render_table([Check(**c) for c in doc["checks"]]))
    not_ok = [c["name"] for c in doc["checks"] if c["name"] in AUDIT_EXPECTED_OK and c["status"] != "ok"]
    if not_ok:
        step.ok, step.note = False, "expected ok: " + ", ".join(not_ok)
    else:
        step.note = "emulator-backed checks ok; the rest reported honestly"


Checker = Callable[[Step, Tour, Optional[dict], Any, Callable[[str], None]], None]


def tour_steps(tour: Tour) -> list[tuple[Step, Optional[Checker]]]:
    name = f"prod-root-{utcnow().date().isoformat()}-before-{ACTION}"
    marker = tour.workdir / "maintenance-ran"
    guarded = [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ok'); print('maintenance command ran')"]
    detach = ["restore-instance", "--snapshot", name, "--method", "detach"]
    return [
        (Step(1, "snapshot before maintenance", "Seed 3.1 + 8: snapshot the root volume, wait for completed, "
              "run the checklist.", ["snapshot", "--action", ACTION], EXIT_OK), None),
        (Step(2, "verify the snapshot", "Seed 8: the checklist again, any time (volume is still the current "
              "root, EIP noted).", ["verify", name], EXIT_OK), None),
        (Step(3, "guard a maintenance command", "The command runs only after its snapshot passed the checklist.",
              ["guard", "--action", GUARD_ACTION, "--", *guarded], EXIT_OK), _check_guard),
        (Step(4, "list the strategy's snapshots", "Locks show 'unknown': the emulator has no "
              "DescribeLockedSnapshots.", ["list"], EXIT_OK), None),
        (Step(5, "restore plan (no --yes)", "Seed 6.1: print every step with ids; change nothing. (The emulator "
              "lacks DescribeReplaceRootVolumeTasks; the demo answers it 'none running'.)", detach, EXIT_OK),
         _check_plan_changed_nothing),
        (Step(6, "restore the instance from the snapshot", "Seed 6.1, the detach method (moto has no "
              "replace-root-volume tasks): safety snapshot, stop, swap the root, start, re-associate the "
              "Elastic IP.", [*detach, "--yes", "--poll-seconds", "1"], EXIT_OK), _check_restored),
        (Step(7, "audit the account", "Seed 9. Expected: ok where the emulator answers; could-not-check where "
              "it lacks the API (recovery points, vault policy, Recycle Bin, snapshot locks, block public "
              "access); FAIL for the database dump and the binlog chain the demo never made. Exit 1.",
              ["audit", "--json"], EXIT_FAILED), _check_audit),
        (Step(8, "monthly cost", "Seed 10: from the stand-in's real volume size, with the documented prices.",
              ["cost"], EXIT_OK), None),
    ]


def _tour(workdir: Path, log_file: Path, quiet: bool, say: Callable[[str], None]) -> list[Step]:
    from scripts.offline.emulator import running_emulator
    steps: list[Step] = []
    say("== 0. An AWS emulator in this process, and a stand-in production account")
    with running_emulator(workdir) as emulator:
        say(f"   moto server at {emulator.endpoint}; AWS_ENDPOINT_URL and fake credentials set for this process only")
        tour = arrange(workdir, log_file, lambda m: say("   " + m))
        say(f"   stack config {tour.config_file}; operations log {tour.log_file}")
        for step, check in tour_steps(tour):
            say(f"\n== {step.number}. {step.title}\n   {step.why}")
            if step.number == 7:
                add_baseline(tour, f"prod-root-{utcnow().date().isoformat()}-before-{ACTION}")
            before = _root_eip_state(tour)
            doc = _run(step, tour, quiet or step.argv[-1] == "--json", say)
            if check:
                check(step, tour, doc, before, say)
            steps.append(step)
    return steps


def run_demo(ctx: Context) -> int:
    quiet = ctx.json
    out = sys.stderr if quiet else sys.stdout

    def say(message: str) -> None:
        print(message, file=out, flush=True)

    keep = ctx.args.keep_dir
    temp = None if keep else tempfile.TemporaryDirectory(prefix="quickport-demo-")
    workdir = Path(keep or temp.name)  # type: ignore[union-attr]
    workdir.mkdir(parents=True, exist_ok=True)
    log_file = ctx.args.log_file or workdir / "operations.jsonl"
    started = time.monotonic()
    try:
        steps = _tour(workdir, log_file, quiet, say)
        ok = all(s.ok for s in steps) and len(steps) == 8
        elapsed = round(time.monotonic() - started, 1)
        # The demo's own line goes to the demo's log, never to the real operations log.
        ctx.args.log_file = log_file
        ctx.log("demo", ok=ok, seconds=elapsed,
                steps=[{"step": s.title, "exit": s.exit_code, "ok": s.ok} for s in steps])
    finally:
        if temp is not None:
            temp.cleanup()
    width = max(len(s.title) for s in steps)
    summary = ["", f"== Demo {'passed' if ok else 'FAILED'} in {elapsed} s"] + [
        f"   {'ok  ' if s.ok else 'FAIL'} {s.number}. {s.title:<{width}}  exit {s.exit_code} "
        f"(expected {s.expected_exit}), {s.seconds} s" + (f"  {s.note}" if s.note else "") for s in steps]
    if keep:
        summary.append(f"   stack config and operations log kept in {workdir}")
    if quiet:
        print("\n".join(summary), file=sys.stderr)
    ctx.emit({"ok": ok, "seconds": elapsed, "steps": [asdict(s) for s in steps]}, "\n".join(summary))
    return EXIT_OK if ok else EXIT_FAILED
