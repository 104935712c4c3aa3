"""`backupctl prune`: plan, then (with --yes) delete the CLI snapshots whose RetainUntil has passed.

Arguments and rendering; the steps are scripts/workflows/prune.py.
"""
from __future__ import annotations

import argparse

from scripts.commands.base import Context, add_common_options
from scripts.errors import EXIT_FAILED, EXIT_OK, UsageError
from scripts.workflows import prune as flow

PRUNE_HELP = """\
Delete the pre-maintenance snapshots `backupctl snapshot`/`guard` made once their RetainUntil tag
(set from --retain-days, default 30 days) has passed. Deleted: only a snapshot that is expired, NOT
locked, NOT a baseline of the stack, NOT behind an AMI and NOT the newest snapshot of its action;
every other one is listed as kept, with the reason. Snapshots without RetainUntil are never deleted.

Without --yes (or with --dry-run): print the plan, delete nothing. With --yes: delete the planned
ones. Nothing is deleted unless a Recycle Bin retention rule for EBS snapshots covers them: a
deleted snapshot goes to the Recycle Bin and can be recovered for the rule's retention period.

Who may run it: the guard-rails operator policy denies ec2:DeleteSnapshot on strategy snapshots on
purpose, so operators cannot; run prune as the maintenance role (docs/cli-snapshots.md, "prune").
Exit: 0 plan printed or every planned snapshot deleted; 1 a deletion failed or the plan is blocked
(no Recycle Bin rule); 2 bad usage."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="delete expired CLI snapshots (plan; --yes deletes, into the Recycle Bin)",
                       description=PRUNE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--yes", action="store_true", help="delete the snapshots the plan marks (without it: plan only)")
    p.add_argument("--dry-run", action="store_true", help="print the plan only, also with --yes (the default)")
    add_common_options(p)
    p.set_defaults(handler=run_prune)


def _baseline_names(ctx: Context) -> frozenset[str]:
    try:
        return frozenset(b.name for b in ctx.config.baselines)
    except UsageError:   # no stack file: baselines still carry no RetainUntil, so they are kept anyway
        return frozenset()


def render(plan: flow.PrunePlan, executed: bool) -> str:
    head = ("Prune" if executed else "Prune plan (nothing deleted; re-run with --yes to delete)") + \
        f", region {plan.region}"
    lines = [head, f"  Recycle Bin rule: {plan.recycle_bin or 'NONE'}"]
    for item in plan.items:
        verb = ("DELETED" if item.result == "deleted" else "NOT DELETED") if executed and item.delete else \
            ("delete" if item.delete else "keep")
        lines.append(f"  {verb:<11} {item.snapshot_id}  {item.name or '-'}: {item.reason}"
                     + (f" ({item.result})" if item.result not in (None, "deleted") else ""))
    if not plan.items:
        lines.append("  no strategy snapshots")
    lines += [f"BLOCKED: {b}" for b in plan.blockers]
    lines.append(f"{len(plan.to_delete)} to delete, {len(plan.items) - len(plan.to_delete)} kept")
    return "\n".join(lines)


def run_prune(ctx: Context) -> int:
    plan = flow.build_prune_plan(ctx, _baseline_names(ctx))
    execute = ctx.args.yes and not ctx.args.dry_run and not plan.blockers
    if execute and plan.to_delete:
        flow.execute_prune(ctx, plan)
    failed = [i for i in plan.to_delete if execute and i.result != "deleted"]
    ctx.emit({"executed": execute, "ok": not plan.blockers and not failed, "plan": plan.to_json()},
             render(plan, execute))
    return EXIT_FAILED if plan.blockers or failed else EXIT_OK
