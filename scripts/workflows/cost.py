"""`backupctl cost`: what the strategy costs per month, in INR and USD (seed section 10).

Figures come from the live account where it can tell (root volume size, the strategy's snapshots,
their locks, the newest dump's size) and from stated assumptions where it cannot (how much of the
volume is written, how much of it changes per day). Every price and assumption is an input.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from components.config import StackConfig
from components.signals import BINLOG_METRICS, DUMP_METRICS, alarm_specs
from scripts.agent import binlog_ship
from scripts.aws import ec2 as ec2api
from scripts.aws import s3 as s3api
from scripts.aws.errors import AWS_ERRORS, describe
from scripts.workflows.base import Session

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
# Monitoring (CloudWatch and CloudTrail pricing pages, as stored; NOT verified against the live list):
# a standard-resolution alarm metric $0.10/month, a custom metric $0.30/month (the first 10 of each
# are in the always-free tier, which this estimate does not subtract); CloudTrail's first copy of
# management events is free, so the trail costs only its S3 storage.
ALARM_USD_MONTH = 0.10
CUSTOM_METRIC_USD_MONTH = 0.30
TRAIL_LOG_GB_MONTH = 0.5          # assumption: compressed management-event logs written per month (small account)
TRAIL_LOG_RETENTION_DAYS = 90     # components/monitoring.py keeps (and locks) trail logs this long
# The air-gapped vault's storage price was not found in the stored AWS pages: priced like an EBS
# snapshot by default (an assumption), override with --air-gapped-gb-month.
AIR_GAPPED_USD_GB_MONTH = SNAPSHOT_USD_GB_MONTH
S3_PUT_USD_1000 = 0.005           # S3 Standard PUT/COPY/POST/LIST per 1,000 requests; NOT verified here

# Point-in-time recovery (the shipper, pitr_contract: one segment per binlog file, FLUSH BINARY LOGS
# each interval with writes). Assumptions, every one a flag or stated in docs/cli-audit-cost-demo.md:
BINLOG_GB_DAY = 0.5               # raw ROW-format binlog written per day (GT06 positions + CRM); --binlog-gb-day
BINLOG_PUTS_WITH_WRITES = 4       # segment, its manifest, the index head listing it, the head's confirmed point
BINLOG_PUTS_IDLE = 1              # the head refresh (confirmed_at) only
BINLOG_WRITE_SHARE = 1.0          # share of intervals with writes: the GPS server writes all day
BINLOG_INDEX_ENTRY_BYTES = 350    # one segment's entry (file, key, bytes, sha256, GTIDs, times; ~340 B measured)
BINLOG_INDEX_HEAD_BYTES = 350     # the head without entries (chain, server, confirmed point, pages; ~340 B)
BINLOG_INDEX_PAGE_SEGMENTS = binlog_ship.INDEX_PAGE_SEGMENTS   # a sealed page's entries; the head holds 1..this

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
    "binlog_gb_day": 1.0,         # twice the assumed binlog volume
}

@dataclass(frozen=True)
class Rates:
    """Prices and assumptions (the command's flags; defaults above)."""
    usd_inr: float = USD_INR
    snapshot_price: float = SNAPSHOT_USD_GB_MONTH
    gp3_price: float = GP3_USD_GB_MONTH
    s3_price: float = S3_STANDARD_USD_GB_MONTH
    daily_change_pct: float = DAILY_CHANGE_PCT
    used_pct: float = USED_PCT
    premaint_keep_days: int = PREMAINT_KEEP_DAYS
    alarm_price: float = ALARM_USD_MONTH
    metric_price: float = CUSTOM_METRIC_USD_MONTH
    trail_log_gb: float = TRAIL_LOG_GB_MONTH
    air_gapped_price: float = AIR_GAPPED_USD_GB_MONTH
    binlog_gb_day: float = BINLOG_GB_DAY
    put_price: float = S3_PUT_USD_1000


@dataclass(frozen=True)
class Overrides:
    """Figures the operator gives instead of reading them from the account (None: read them)."""
    used_pct: float = USED_PCT
    volume_gb: Optional[int] = None
    premaint_count: Optional[int] = None
    dump_gb: Optional[float] = None


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
    alarm_count: int = 0
    custom_metric_count: int = 0
    trail: bool = False
    air_gapped: bool = False
    binlog_interval_seconds: Optional[int] = None   # None: binlog.enabled is false, no binlog lines
    binlog_retention_days: int = 0
    lock_days: int = 0                 # dumps.objectLock.days: every version (index rewrites too) is kept this long
    noncurrent_days: int = 7


def _try(notes: list[str], what: str, fn: Callable[[], Any], fallback: Any) -> Any:
    """Optional account reads: on an AWS error, note why and use the fallback."""
    try:
        return fn()
    except AWS_ERRORS as e:
        notes.append(f"{what}: unknown ({describe(e, operation=True)})")
        return fallback


def gather_inputs(session: Session, cfg: StackConfig, instance_id: str, overrides: Overrides,
                  notes: list[str], progress: Optional[Callable[[str], None]] = None) -> Inputs:
    """Sizes from the account where it can tell; the overrides win; AWS errors become notes."""
    args = overrides
    ec2 = session.client("ec2")
    volume_id, volume_type = None, "gp3"
    if args.volume_gb is not None:
        volume_gb = args.volume_gb
    else:
        if progress:
            progress(f"reading the root volume of {instance_id}")
        instance = ec2api.describe_instance(ec2, instance_id)
        volume_id = ec2api.root_volume_id(instance)
        vol = ec2api.describe_volume(ec2, volume_id)
        volume_gb, volume_type = vol["Size"], vol.get("VolumeType", "gp3")
        if volume_type != "gp3":
            notes.append(f"root volume {volume_id} is {volume_type}; priced at the gp3 rate (--gp3-gb-month)")
    baseline_names = {b.name for b in cfg.baselines}
    snaps = _try(notes, "strategy snapshots", lambda: ec2api.strategy_snapshots(ec2), None)
    if args.premaint_count is not None:
        premaint, source = args.premaint_count, "--premaint-count"
    elif snaps is None:
        premaint, source = 0, "unknown (DescribeSnapshots failed)"
    else:
        premaint = sum(1 for s in snaps if ec2api.tags_of(s).get("Name") not in baseline_names
                       and s.get("State") != "error")
        source = "counted in the account"
    locked = None
    if snaps:
        ids = [s["SnapshotId"] for s in snaps]
        locks = _try(notes, "snapshot locks", lambda: ec2api.describe_locks(ec2, ids), None)
        if locks is not None:
            locked = sum(1 for info in locks.values() if info.get("LockState") != "expired")
    elif snaps == []:
        locked = 0
    dump_gb, dump_source = args.dump_gb, "--dump-gb"
    if dump_gb is None:
        d = cfg.dumps
        newest = _try(notes, "newest dump", lambda: s3api.read_json_object(
            session.client("s3"), d.bucket_name, f"{d.prefix}/{d.database}/latest.json"), None)
        if newest and isinstance(newest.get("bytes"), int):
            dump_gb, dump_source = newest["bytes"] / 1e9, "newest dump (latest.json)"
        else:
            dump_gb, dump_source = DUMP_GB_DEFAULT, "default (no latest.json)"
    interval = cfg.binlog.interval_seconds if cfg.binlog.enabled else None
    return Inputs(
        volume_id=volume_id, volume_gb=volume_gb, volume_type=volume_type,
        used_gb=volume_gb * args.used_pct / 100, retention_days=cfg.backup.retention_days,
        recycle_bin_days=cfg.recycle_bin.retention_days, premaint_count=premaint, premaint_source=source,
        baseline_count=len(cfg.baselines), baseline_lock_days=[b.lock.days for b in cfg.baselines],
        locked_snapshots=locked, dump_gb=dump_gb, dump_source=dump_source,
        dump_retention_days=cfg.dumps.retention_days,
        alarm_count=len(alarm_specs(cfg.stack, cfg.dumps.database, cfg.backup.vault_name, interval)),
        custom_metric_count=len(DUMP_METRICS) + (len(BINLOG_METRICS) if interval else 0),
        trail=cfg.monitoring.trail == "create", air_gapped=cfg.backup.air_gapped_vault is not None,
        binlog_interval_seconds=interval, binlog_retention_days=cfg.binlog.retention_days,
        lock_days=cfg.dumps.object_lock.days, noncurrent_days=max(7, cfg.dumps.noncurrent_retention_days))


def _binlog_storage_rows(inputs: Inputs, args: Rates, s3_price: float) -> list[tuple[str, str, float, float, float]]:
    """Segments: written once, current for binlog.retentionDays, then noncurrent for the noncurrent days.
    The index: its head is rewritten once per segment shipped and once per interval (the confirmed
    point), and Object Lock keeps every version lock_days; it holds only the newest 1..page entries, so
    its size does not grow with the chain's age. Older entries are sealed into pages, each written once
    and kept as the segments are."""
    kept = inputs.binlog_retention_days + inputs.noncurrent_days
    intervals_day = 86400 / (inputs.binlog_interval_seconds or 1)
    segments_day = intervals_day * BINLOG_WRITE_SHARE
    version_days = max(inputs.lock_days, inputs.noncurrent_days)
    page = BINLOG_INDEX_PAGE_SEGMENTS
    rewrites_day = intervals_day + segments_day
    head_bytes = BINLOG_INDEX_HEAD_BYTES + (page + 1) / 2 * BINLOG_INDEX_ENTRY_BYTES   # 1..page entries, evenly
    versions_gb = rewrites_day * version_days * head_bytes / 1e9
    pages_gb = segments_day * kept * BINLOG_INDEX_ENTRY_BYTES / 1e9
    return [
        ("binlog segments (S3)", f"{args.binlog_gb_day:g} GB/day x {kept} d ({inputs.binlog_retention_days} d "
         f"current + {inputs.noncurrent_days} d old version; an assumption: --binlog-gb-day)",
         args.binlog_gb_day * kept, BUDGET["binlog_gb_day"] * kept, s3_price),
        ("binlog index versions (S3)", f"{rewrites_day:,.0f} head rewrites/day kept {version_days} d (Object Lock) x "
         f"{head_bytes / 1000:.1f} kB (the newest 1..{page} entries of {BINLOG_INDEX_ENTRY_BYTES} B, whatever the "
         f"chain's age) + sealed pages {segments_day:,.0f} entries/day x {kept} d",
         versions_gb + pages_gb, versions_gb + pages_gb, s3_price),
    ]


def _binlog_put_fee(inputs: Inputs, args: Rates) -> tuple[str, str, float]:
    intervals_day = 86400 / (inputs.binlog_interval_seconds or 1)
    busy = intervals_day * BINLOG_WRITE_SHARE
    with_writes = BINLOG_PUTS_WITH_WRITES + 1 / BINLOG_INDEX_PAGE_SEGMENTS   # and a sealed page's share
    puts_month = 30 * (busy * with_writes + (intervals_day - busy) * BINLOG_PUTS_IDLE)
    return ("binlog PUT requests", f"{BINLOG_PUTS_WITH_WRITES} per interval with writes (segment, manifest, the "
            f"index head twice) + a page per {BINLOG_INDEX_PAGE_SEGMENTS} segments, {BINLOG_PUTS_IDLE} otherwise: "
            f"{puts_month:,.0f}/month x {args.put_price:g} USD/1000", puts_month * args.put_price / 1000)


def estimate(inputs: Inputs, args: Rates) -> list[Line]:
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
    if inputs.air_gapped:
        # A second, independent chain of the daily points (assumed as large as the vault's).
        rows.append(("air-gapped copies", f"as the daily points, at {args.air_gapped_price:g} USD/GB (assumed)",
                     rows[0][2], rows[0][3], args.air_gapped_price))
    if inputs.trail:
        trail_gb = args.trail_log_gb * TRAIL_LOG_RETENTION_DAYS / 30
        rows.append(("CloudTrail logs (S3)", f"{args.trail_log_gb:g} GB/month kept {TRAIL_LOG_RETENTION_DAYS} d "
                     "(management events: first copy free)", trail_gb, trail_gb, s3))
    if inputs.binlog_interval_seconds:
        rows += _binlog_storage_rows(inputs, args, s3)
    lines = [Line(item, basis, round(gb, 3), round(gb * price, 2), round(gb * price * rate, 2),
                  round(bgb, 3), round(bgb * price, 2), round(bgb * price * rate, 2))
             for item, basis, gb, bgb, price in rows]
    fees = [("alarms and metrics", f"{inputs.alarm_count} alarms x {args.alarm_price:g} + "
             f"{inputs.custom_metric_count} custom metrics x {args.metric_price:g} USD (before the free tier)",
             inputs.alarm_count * args.alarm_price + inputs.custom_metric_count * args.metric_price)]
    if inputs.binlog_interval_seconds:
        fees.append(_binlog_put_fee(inputs, args))
    lines += [Line(item, basis, 0.0, round(fee, 2), round(fee * rate, 2), 0.0, round(fee, 2), round(fee * rate, 2))
              for item, basis, fee in fees]
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
