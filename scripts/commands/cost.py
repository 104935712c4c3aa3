"""`backupctl cost`: the monthly estimate (seed section 10). Arguments and rendering; the figures
are scripts/workflows/cost.py."""
from __future__ import annotations

import argparse
from dataclasses import asdict

from scripts.commands.base import Context, add_common_options, number_in_range
from scripts.errors import EXIT_OK, UsageError
from scripts.workflows.cost import (
    AIR_GAPPED_USD_GB_MONTH,
    ALARM_USD_MONTH,
    BINLOG_GB_DAY,
    BUDGET,
    CUSTOM_METRIC_USD_MONTH,
    DAILY_CHANGE_PCT,
    DUMP_GB_DEFAULT,
    GP3_USD_GB_MONTH,
    PREMAINT_KEEP_DAYS,
    PRICE_DATE,
    PRICE_REGION,
    S3_PUT_USD_1000,
    S3_STANDARD_USD_GB_MONTH,
    SNAPSHOT_USD_GB_MONTH,
    TRAIL_LOG_GB_MONTH,
    USD_INR,
    USED_PCT,
    Inputs,
    Line,
    Overrides,
    Rates,
    estimate,
    gather_inputs,
)

HELP = f"""\
Estimate the monthly cost of the backup strategy in INR and USD, next to a "strategy budget"
computed with the seed's planning assumptions (pessimistic; see the docs).

Line items: daily recovery points (the plan's retention, 7 by default: one full copy of the written
data plus the daily changes), pre-maintenance snapshots (each holds what changed while it outlives the
daily chain), baselines, the Recycle Bin (deleted snapshots kept {7} days), database dumps in S3
Standard (dump size x dumps.retentionDays), the air-gapped copies (with backup.airGappedVault), the
CloudTrail logs (with monitoring.trail: create), the alarms and metrics, with binlog.enabled the
binlog segments (--binlog-gb-day x binlog.retentionDays), the index head versions the shipper rewrites
each interval (all kept by Object Lock; at most one page of entries each) and its PUT requests, and for
scale the gp3 root volume itself.

From the account: root volume size (DescribeVolumes; --volume-gb to skip), the strategy's snapshots
and their locks, the newest dump's size. Prices: {PRICE_REGION} list prices as of {PRICE_DATE}, not
verified from here; override them. Exit 0; 1 if the volume cannot be read; 2 on a bad flag."""


FLAGS = (
    # flag, dest, default, lo, hi, integer, help (the metavar names the unit)
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
    ("--premaint-keep-days", "premaint_keep_days", None, 1, 36500, True,
     "days a pre-maintenance snapshot is kept (default: the stack's snapshots.retainDays, the RetainUntil "
     f"that `prune` honours; {PREMAINT_KEEP_DAYS} when unset)"),
    ("--volume-gb", "volume_gb", None, 1, 65536, True, "root volume size in GiB (default: DescribeVolumes)"),
    ("--premaint-count", "premaint_count", None, 0, 10000, True,
     "pre-maintenance snapshots held at once (default: counted in the account)"),
    ("--alarm-month", "alarm_price", ALARM_USD_MONTH, 0, 10, False,
     f"USD per standard alarm metric per month (default {ALARM_USD_MONTH})"),
    ("--custom-metric-month", "metric_price", CUSTOM_METRIC_USD_MONTH, 0, 10, False,
     f"USD per custom metric per month (default {CUSTOM_METRIC_USD_MONTH})"),
    ("--trail-log-gb", "trail_log_gb", TRAIL_LOG_GB_MONTH, 0, 10000, False,
     f"GB of CloudTrail logs written per month (default {TRAIL_LOG_GB_MONTH}, an assumption)"),
    ("--air-gapped-gb-month", "air_gapped_price", AIR_GAPPED_USD_GB_MONTH, 0, 10, False,
     f"USD per GB-month in the air-gapped vault (default {AIR_GAPPED_USD_GB_MONTH}, not a published price)"),
    ("--binlog-gb-day", "binlog_gb_day", BINLOG_GB_DAY, 0, 10000, False,
     f"GB of binlog written per day (default {BINLOG_GB_DAY}, an assumption: check SHOW BINARY LOGS)"),
    ("--put-1000", "put_price", S3_PUT_USD_1000, 0, 10, False,
     f"USD per 1,000 S3 PUT requests (default {S3_PUT_USD_1000})"),
    ("--dump-gb", "dump_gb", None, 0, 100000, False,
     f"compressed size of one dump in GB (default: the newest dump's size, else {DUMP_GB_DEFAULT})"),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cost", help="monthly cost estimate in INR and USD", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, dest, default, lo, hi, integer, help_text in FLAGS:
        metavar = ("INR" if flag == "--usd-inr" else "USD" if flag.endswith(("-gb-month", "-month")) else
                   "USD" if flag == "--put-1000" else
                   "PCT" if flag.endswith("-pct") else "DAYS" if flag.endswith("-days") else
                   "N" if flag.endswith("-count") else "GB")
        p.add_argument(flag, dest=dest, default=default, type=number_in_range(flag, lo, hi, "", integer=integer),
                       metavar=metavar, help=help_text)
    add_common_options(p)
    p.set_defaults(handler=run_cost)


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
    _ = ctx.config  # a bad stack config is a usage error before any AWS call
    if ctx.args.volume_gb is None and not ctx.instance_id:
        raise UsageError("--instance-id: required when the stack config has no instanceId (or pass --volume-gb)")
    notes: list[str] = []
    if ctx.region != PRICE_REGION:
        notes.append(f"the default prices are {PRICE_REGION}'s; pass --snapshot-gb-month, --gp3-gb-month and "
                     f"--s3-gb-month for {ctx.region}")
    a = ctx.args
    if a.premaint_keep_days is None:   # what `snapshot` tags RetainUntil with and `prune` deletes after
        a.premaint_keep_days = ctx.config.snapshot_retain_days
    overrides = Overrides(used_pct=a.used_pct, volume_gb=a.volume_gb, premaint_count=a.premaint_count,
                          dump_gb=a.dump_gb)
    inputs = gather_inputs(ctx, ctx.config, ctx.instance_id, overrides, notes, None if ctx.json else ctx.progress)
    lines = estimate(inputs, Rates(usd_inr=a.usd_inr, snapshot_price=a.snapshot_price, gp3_price=a.gp3_price,
                                   s3_price=a.s3_price, daily_change_pct=a.daily_change_pct, used_pct=a.used_pct,
                                   premaint_keep_days=a.premaint_keep_days, alarm_price=a.alarm_price,
                                   metric_price=a.metric_price, trail_log_gb=a.trail_log_gb,
                                   air_gapped_price=a.air_gapped_price, binlog_gb_day=a.binlog_gb_day,
                                   put_price=a.put_price))
    prices = {"region": PRICE_REGION, "date": PRICE_DATE, "verified": False,
              "snapshot_usd_gb_month": ctx.args.snapshot_price, "gp3_usd_gb_month": ctx.args.gp3_price,
              "s3_standard_usd_gb_month": ctx.args.s3_price, "usd_inr": ctx.args.usd_inr,
              "alarm_usd_month": ctx.args.alarm_price, "custom_metric_usd_month": ctx.args.metric_price,
              "air_gapped_usd_gb_month": ctx.args.air_gapped_price, "put_usd_1000": ctx.args.put_price}
    assumptions = {"daily_change_pct": ctx.args.daily_change_pct, "used_pct": ctx.args.used_pct,
                   "premaint_keep_days": ctx.args.premaint_keep_days, "binlog_gb_day": ctx.args.binlog_gb_day,
                   "budget": BUDGET}
    total = next(line for line in lines if line.item == "backup total")
    ctx.log("cost", instance=ctx.instance_id, volume_gb=inputs.volume_gb, usd=total.usd, inr=total.inr)
    ctx.emit({"prices": prices, "assumptions": assumptions, "inputs": asdict(inputs),
              "lines": [asdict(line) for line in lines], "total": {"usd": total.usd, "inr": total.inr},
              "notes": notes},
             render(lines, inputs, ctx.args, notes))
    return EXIT_OK
