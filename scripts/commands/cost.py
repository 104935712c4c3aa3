"""`backupctl cost`: what the strategy costs per month, in INR and USD (seed section 10).

Figures come from the live account where it can tell (root volume size, the strategy's snapshots,
their locks, the newest dump's size) and from stated assumptions where it cannot (how much of the
volume is written, how much of it changes per day). Every price and assumption is a flag.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

from scripts import auditops, ec2ops
from scripts.common import EXIT_OK, Context, UsageError, add_common_options

# Published on-demand list prices, region ap-south-1 (Asia Pacific, Mumbai), USD, as of 2025-11.
# NOT verified against the AWS price list from this machine (no internet): check
# https://aws.amazon.com/ebs/pricing/ and https://aws.amazon.com/s3/pricing/ (region Mumbai) and
# pass the flags if they differ.
PRICE_DATE = "2025-11"
PRICE_REGION = "ap-south-1"
SNAPSHOT_USD_GB_MONTH = 0.05    # EBS snapshot, standard tier (AWS Backup bills EBS-backed points the same)
GP3_USD_GB_MONTH = 0.0912       # EBS gp3 volume storage (3000 IOPS / 125 MB/s baseline included)
S3_STANDARD_USD_GB_MONTH = 0.025  # S3 Standard, first 50 TB per month
# Snapshot locks and Recycle Bin rules have no charge of their own; locked or binned snapshots keep
# being billed as snapshot storage until the lock expires or the bin releases them.
USD_INR = 88.0                  # RBI reference rate, approx. 2025-11; NOT verified here: pass --usd-inr

# Assumptions where the account cannot tell (documented in docs/cli-audit-cost-demo.md).
DAILY_CHANGE_PCT = 2.0     # share of the written data that changes per day (app logs, MariaDB pages, GPS)
USED_PCT = 100.0           # share of the volume that is written; 100 = upper bound (snapshots skip unwritten blocks)
PREMAINT_KEEP_DAYS = 30    # a pre-maintenance snapshot is kept (locked) this long
DUMP_GB_DEFAULT = 1.0      # compressed size of one dump when the bucket cannot tell

# The seed strategy's budget: its own cost table is not in the repo, so these are the planning
# assumptions stated in docs/cli-audit-cost-demo.md, applied to the same line items.
BUDGET = {
    "daily_change_pct": 5.0,      # a pessimistic daily churn
    "used_pct": 100.0,            # the whole volume written
    "premaint_per_month": 4,      # one maintenance window a week
    "premaint_unique_pct": 25.0,  # each pre-maintenance snapshot holds a quarter of the volume alone
    "baseline_unique_pct": 100.0,  # a long-kept baseline ends up holding a full copy
    "dump_gb": 2.0,               # compressed dump size
}

HELP = f"""\
Estimate the monthly cost of the backup strategy in INR and USD, next to a "strategy budget"
computed with the seed's planning assumptions (pessimistic; see the docs).

Line items: daily recovery points (the plan's retention, 7 by default: one full copy of the written
data plus the daily changes), pre-maintenance snapshots (each holds what changed while it outlives the
daily chain), baselines, the Recycle Bin (deleted snapshots kept {7} days), database dumps in S3
Standard (dump size x dumps.retentionDays), and for scale the gp3 root volume itself.

From the account: root volume size (DescribeVolumes; --volume-gb to skip), the strategy's snapshots
and their locks, the newest dump's size. Prices: {PRICE_REGION} list prices as of {PRICE_DATE}, not
verified from here; override them. Exit 0; 1 if the volume cannot be read; 2 on a bad flag."""


def _number(flag: str, lo: float, hi: float, integer: bool = False) -> Callable[[str], float]:
    kind = "whole number" if integer else "number"

    def parse(value: str):
        try:
            number = int(value) if integer else float(value)
        except ValueError:
            number = None
        if number is None or not lo <= number <= hi or number != number:  # NaN compares unequal
            raise argparse.ArgumentTypeError(f"{flag} {value!r}: must be a {kind} from {lo:g} to {hi:g}")
        return number
    return parse


FLAGS = (
    # flag, dest, default, lo, hi, integer, help
    ("--usd-inr", "usd_inr", USD_INR, 1, 1000, False, f"INR per USD (default {USD_INR}, approx. {PRICE_DATE})"),
    ("--snapshot-gb-month", "snapshot_price", SNAPSHOT_USD_GB_MONTH, 0, 10, False,
     f"USD per GB-month of EBS snapshot storage (default {SNAPSHOT_USD_GB_MONTH})"),
    ("--gp3-gb-month", "gp3_price", GP3_USD_GB_MONTH, 0, 10, False,
     f"USD per GB-month of gp3 volume (default {GP3_USD_GB_MONTH})"),
    ("--s3-gb-month", "s3_price", S3_STANDARD_USD_GB_MONTH, 0, 10, False,
     f"USD per GB-month of S3 Standard (default {S3_STANDARD_USD_GB_MONTH})"),
    ("--daily-change-pct", "daily_change_pct", DAILY_CHANGE_PCT, 0, 100, False,
     f"percent of the written data changed per day (default {DAILY_CHANGE_PCT})"),
    ("--used-pct", "used_pct", USED_PCT, 0, 100, False,
     f"percent of the root volume that is written (default {USED_PCT:g}: upper bound)"),
    ("--premaint-keep-days", "premaint_keep_days", PREMAINT_KEEP_DAYS, 1, 36500, True,
     f"days a pre-maintenance snapshot is kept (default {PREMAINT_KEEP_DAYS})"),
    ("--volume-gb", "volume_gb", None, 1, 65536, True, "root volume size in GiB (default: DescribeVolumes)"),
    ("--premaint-count", "premaint_count", None, 0, 10000, True,
     "pre-maintenance snapshots held at once (default: counted in the account)"),
    ("--dump-gb", "dump_gb", None, 0, 100000, False,
     f"compressed size of one dump in GB (default: the newest dump's size, else {DUMP_GB_DEFAULT})"),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cost", help="monthly cost estimate in INR and USD", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, dest, default, lo, hi, integer, help_text in FLAGS:
        metavar = ("INR" if flag == "--usd-inr" else "USD" if flag.endswith("-gb-month") else
                   "PCT" if flag.endswith("-pct") else "DAYS" if flag.endswith("-days") else
                   "N" if flag.endswith("-count") else "GB")
        p.add_argument(flag, dest=dest, default=default, type=_number(flag, lo, hi, integer), metavar=metavar,
                       help=help_text)
    add_common_options(p)
    p.set_defaults(handler=run_cost)


@dataclass
class Line:
    item: str
    basis: str
    gb_month: float
    usd: float
    inr: float
    budget_gb_month: float
    budget_usd: float
    budget_inr: float


@dataclass
class Inputs:
    volume_id: Optional[str]
    volume_gb: int
    volume_type: str
    used_gb: float
    retention_days: int
    recycle_bin_days: int
    premaint_count: int
    premaint_source: str
    baseline_count: int
    baseline_lock_days: list[int]
    locked_snapshots: Optional[int]
    dump_gb: float
    dump_source: str
    dump_retention_days: int


def _try(notes: list[str], what: str, fn: Callable[[], Any], fallback: Any) -> Any:
    """Optional account reads: on an AWS error, note why and use the fallback."""
    try:
        return fn()
    except auditops.AWS_ERRORS as e:
        notes.append(f"{what}: unknown ({auditops.error_reason(e)})")
        return fallback


def gather_inputs(ctx: Context, notes: list[str]) -> Inputs:
    cfg, args = ctx.config, ctx.args
    ec2 = ctx.client("ec2")
    volume_id, volume_type = None, "gp3"
    if args.volume_gb is not None:
        volume_gb = args.volume_gb
    else:
        if not ctx.json:
            ctx.progress(f"reading the root volume of {ctx.instance_id}")
        instance = ec2ops.describe_instance(ec2, ctx.instance_id)
        volume_id = ec2ops.root_volume_id(instance)
        vol = auditops.volume(ec2, volume_id)
        volume_gb, volume_type = vol["Size"], vol.get("VolumeType", "gp3")
        if volume_type != "gp3":
            notes.append(f"root volume {volume_id} is {volume_type}; priced at the gp3 rate (--gp3-gb-month)")
    baseline_names = {b.name for b in cfg.baselines}
    snaps = _try(notes, "strategy snapshots", lambda: ec2ops.strategy_snapshots(ec2), None)
    if args.premaint_count is not None:
        premaint, source = args.premaint_count, "--premaint-count"
    elif snaps is None:
        premaint, source = 0, "unknown (DescribeSnapshots failed)"
    else:
        premaint = sum(1 for s in snaps if ec2ops.tags_of(s).get("Name") not in baseline_names
                       and s.get("State") != "error")
        source = "counted in the account"
    locked = None
    if snaps:
        ids = [s["SnapshotId"] for s in snaps]
        locks = _try(notes, "snapshot locks", lambda: ec2ops.describe_locks(ec2, ids), None)
        if locks is not None:
            locked = sum(1 for info in locks.values() if info.get("LockState") != "expired")
    elif snaps == []:
        locked = 0
    dump_gb, dump_source = args.dump_gb, "--dump-gb"
    if dump_gb is None:
        d = cfg.dumps
        newest = _try(notes, "newest dump", lambda: auditops.read_json_object(
            ctx.client("s3"), d.bucket_name, f"{d.prefix}/{d.database}/latest.json"), None)
        if newest and isinstance(newest.get("bytes"), int):
            dump_gb, dump_source = newest["bytes"] / 1e9, "newest dump (latest.json)"
        else:
            dump_gb, dump_source = DUMP_GB_DEFAULT, "default (no latest.json)"
    return Inputs(
        volume_id=volume_id, volume_gb=volume_gb, volume_type=volume_type,
        used_gb=volume_gb * args.used_pct / 100, retention_days=cfg.backup.retention_days,
        recycle_bin_days=cfg.recycle_bin.retention_days, premaint_count=premaint, premaint_source=source,
        baseline_count=len(cfg.baselines), baseline_lock_days=[b.lock.days for b in cfg.baselines],
        locked_snapshots=locked, dump_gb=dump_gb, dump_source=dump_source,
        dump_retention_days=cfg.dumps.retention_days)


def estimate(inputs: Inputs, args: argparse.Namespace) -> list[Line]:
    """GB-months per line item, ours and the budget's, priced in USD and INR."""
    change = args.daily_change_pct / 100
    used = inputs.used_gb
    daily_gb = change * used
    b = BUDGET
    b_used = inputs.volume_gb * b["used_pct"] / 100
    b_daily = b["daily_change_pct"] / 100 * b_used
    snap, s3, gp3, rate = args.snapshot_price, args.s3_price, args.gp3_price, args.usd_inr
    n = inputs.retention_days
    rows = [
        # The chain's oldest point holds every written block; each later one adds a day of changes.
        ("daily recovery points", f"x{n}: {used:.1f} GB + {n - 1} x {daily_gb:.2f} GB/day",
         used + (n - 1) * daily_gb, b_used + (n - 1) * b_daily, snap),
        # Outliving the chain, a snapshot alone holds the blocks changed since it, up to a full copy.
        ("pre-maintenance snapshots",
         f"{inputs.premaint_count} ({inputs.premaint_source}) x min({used:.1f}, "
         f"{daily_gb:.2f} x {args.premaint_keep_days} d) GB",
         inputs.premaint_count * min(used, daily_gb * args.premaint_keep_days),
         b["premaint_per_month"] * b["premaint_unique_pct"] / 100 * b_used, snap),
        ("baselines", f"{inputs.baseline_count} x min({used:.1f}, {daily_gb:.2f} x lock days) GB",
         sum(min(used, daily_gb * days) for days in inputs.baseline_lock_days),
         inputs.baseline_count * b["baseline_unique_pct"] / 100 * b_used, snap),
        # Each expiring daily point leaves about one day of changes in the bin for its retention.
        ("recycle bin", f"{inputs.recycle_bin_days} d x {daily_gb:.2f} GB",
         inputs.recycle_bin_days * daily_gb, inputs.recycle_bin_days * b_daily, snap),
        ("database dumps (S3)", f"{inputs.dump_retention_days} x {inputs.dump_gb:.2f} GB ({inputs.dump_source})",
         inputs.dump_retention_days * inputs.dump_gb, inputs.dump_retention_days * b["dump_gb"], s3),
    ]
    lines = [Line(item, basis, round(gb, 3), round(gb * price, 2), round(gb * price * rate, 2),
                  round(bgb, 3), round(bgb * price, 2), round(bgb * price * rate, 2))
             for item, basis, gb, bgb, price in rows]
    total_gb = sum(line.gb_month for line in lines)
    lines.append(Line("backup total", "", round(total_gb, 3), round(sum(line.usd for line in lines), 2),
                      round(sum(line.inr for line in lines), 2),
                      round(sum(line.budget_gb_month for line in lines), 3),
                      round(sum(line.budget_usd for line in lines), 2),
                      round(sum(line.budget_inr for line in lines), 2)))
    volume_gb = inputs.volume_gb
    lines.append(Line("root volume (gp3, for scale)", f"{volume_gb} GiB provisioned", volume_gb,
                      round(volume_gb * gp3, 2), round(volume_gb * gp3 * rate, 2),
                      volume_gb, round(volume_gb * gp3, 2), round(volume_gb * gp3 * rate, 2)))
    return lines


def render(lines: list[Line], inputs: Inputs, args: argparse.Namespace, notes: list[str]) -> str:
    header = ("item", "GB-mo", "USD", "INR", "budget GB-mo", "budget USD", "budget INR")
    rows = [(line.item, f"{line.gb_month:.1f}", f"{line.usd:.2f}", f"{line.inr:,.0f}",
             f"{line.budget_gb_month:.1f}", f"{line.budget_usd:.2f}", f"{line.budget_inr:,.0f}") for line in lines]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(r):
        return "  ".join(r[0].ljust(widths[0]) if i == 0 else r[i].rjust(widths[i]) for i in range(len(r)))
    table = [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]
    table.insert(len(table) - 2, "  ".join("-" * w for w in widths))
    vol = f"{inputs.volume_id} " if inputs.volume_id else ""
    out = [f"Monthly cost estimate, {PRICE_REGION} list prices as of {PRICE_DATE} (not verified here; flags override)",
           f"root volume {vol}{inputs.volume_gb} GiB {inputs.volume_type}; written {args.used_pct:g}% = "
           f"{inputs.used_gb:.1f} GB; daily change {args.daily_change_pct:g}%; USD 1 = INR {args.usd_inr:g}",
           f"prices USD/GB-month: snapshot {args.snapshot_price:g}, gp3 {args.gp3_price:g}, "
           f"S3 Standard {args.s3_price:g}; snapshot locks: "
           + (f"{inputs.locked_snapshots} locked (no lock charge; billed until they expire)"
              if inputs.locked_snapshots is not None else "unknown"),
           "", *table, "", "basis:"]
    out += [f"  {line.item}: {line.basis}" for line in lines if line.basis]
    out += ["  budget: the seed's planning assumptions (docs/cli-audit-cost-demo.md): "
            f"{BUDGET['daily_change_pct']:g}%/day change, {BUDGET['premaint_per_month']} pre-maintenance "
            f"snapshots x {BUDGET['premaint_unique_pct']:g}% of the volume, baselines a full copy each, "
            f"{BUDGET['dump_gb']:g} GB dumps"]
    out += [f"note: {n}" for n in notes]
    return "\n".join(out)


def run_cost(ctx: Context) -> int:
    ctx.config  # a bad stack config is a usage error before any AWS call
    if ctx.args.volume_gb is None and not ctx.instance_id:
        raise UsageError("--instance-id: required when the stack config has no instanceId (or pass --volume-gb)")
    notes: list[str] = []
    if ctx.region != PRICE_REGION:
        notes.append(f"the default prices are {PRICE_REGION}'s; pass --snapshot-gb-month, --gp3-gb-month and "
                     f"--s3-gb-month for {ctx.region}")
    inputs = gather_inputs(ctx, notes)
    lines = estimate(inputs, ctx.args)
    prices = {"region": PRICE_REGION, "date": PRICE_DATE, "verified": False,
              "snapshot_usd_gb_month": ctx.args.snapshot_price, "gp3_usd_gb_month": ctx.args.gp3_price,
              "s3_standard_usd_gb_month": ctx.args.s3_price, "usd_inr": ctx.args.usd_inr}
    assumptions = {"daily_change_pct": ctx.args.daily_change_pct, "used_pct": ctx.args.used_pct,
                   "premaint_keep_days": ctx.args.premaint_keep_days, "budget": BUDGET}
    total = next(line for line in lines if line.item == "backup total")
    ctx.log("cost", instance=ctx.instance_id, volume_gb=inputs.volume_gb, usd=total.usd, inr=total.inr)
    ctx.emit({"prices": prices, "assumptions": assumptions, "inputs": asdict(inputs),
              "lines": [asdict(line) for line in lines], "total": {"usd": total.usd, "inr": total.inr},
              "notes": notes},
             render(lines, inputs, ctx.args, notes))
    return EXIT_OK
