"""`backupctl preview`: what `pulumi preview` would declare, computed offline on the mock engine."""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from components.config import ConfigError, load_stack_config, read_stack_file, stack_file
from scripts.commands.base import Context, add_common_options
from scripts.errors import EXIT_FAILED, EXIT_OK, CommandError, UsageError

HELP = """\
Run the Pulumi program on the SDK's mock engine with the stack's config (no Pulumi CLI, no AWS
credentials) and print the resource tree as `pulumi preview` would: type, name, parent, protect.
Then judge the declared resources with the CrossGuard policy pack in policies/, started and driven
over the analyzer protocol exactly as `pulumi preview --policy-pack policies` does.
Exit 0 on success, 1 when a mandatory policy is violated, 2 on a config error (one line naming the
key, the value and what is allowed)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preview", help="offline preview of the stack's resources", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("policies")
    g.add_argument("--policy-config", type=Path, metavar="FILE",
                   help="policy pack config, same JSON as `pulumi preview --policy-pack-config FILE`")
    g.add_argument("--no-policies", action="store_true", help="skip the policy pack (resource tree only)")
    add_common_options(p, aws=False)
    p.set_defaults(handler=run_preview)


def declared_resources(ctx: Context):
    """Validate the stack file, then run the program on the mock engine. Config errors exit 2."""
    import pulumi

    from scripts.offline.engine import run_stack_program

    path = ctx.args.config_file or stack_file(ctx.args.stack)
    try:
        load_stack_config(ctx.args.stack, path)  # also refuses keys without a namespace
        raw = read_stack_file(path)
        return raw, run_stack_program(raw, stack=ctx.args.stack)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    except pulumi.RunError as e:
        raise UsageError(str(e)) from None


def _children(resources) -> dict[str, list]:
    """Resources by parent URN ("" for the top level), each list sorted by type and name: the engine
    registers them concurrently, so the order they arrive in changes from run to run."""
    by_parent: dict[str, list] = {}
    urns = {r.urn for r in resources}
    for r in resources:
        by_parent.setdefault(r.parent if r.parent in urns else "", []).append(r)
    for children in by_parent.values():
        children.sort(key=lambda r: (r.type, r.name))
    return by_parent


def in_tree_order(resources) -> list:
    """Depth first, children sorted: the same order on every run (diffs in review show real changes)."""
    by_parent, ordered = _children(resources), []

    def walk(parent: str) -> None:
        for r in by_parent.get(parent, []):
            ordered.append(r)
            walk(r.urn)

    walk("")
    return ordered


def render_tree(resources) -> str:
    """An indented tree of type, name and options, children under their component."""
    by_parent = _children(resources)
    rows: list[tuple[str, str, str]] = []

    def walk(parent: str, prefix: str) -> None:
        children = by_parent.get(parent, [])
        for i, r in enumerate(children):
            last = i == len(children) - 1
            branch = "" if parent == "" else ("└─ " if last else "├─ ")
            flags = [f for f, on in (("protect", r.protect), ("retainOnDelete", r.retain_on_delete)) if on]
            rows.append((prefix + branch + r.type, r.name, ", ".join(flags)))
            walk(r.urn, prefix + ("" if parent == "" else ("   " if last else "│  ")))

    walk("", "")
    width_type = max((len(t) for t, _, _ in rows), default=4)
    width_name = max((len(n) for _, n, _ in rows), default=4)
    lines = [f" +  {'Type':<{width_type}}  {'Name':<{width_name}}  Options"]
    lines += [f" +  {t:<{width_type}}  {n:<{width_name}}  {o}".rstrip() for t, n, o in rows]
    return "\n".join(lines)


def summary(resources) -> dict[str, Any]:
    return {"create": len(resources), "protected": sum(r.protect for r in resources),
            "components": sum(not r.custom for r in resources),
            "byType": dict(sorted(Counter(r.type for r in resources).items()))}


def policy_config(ctx: Context):
    """The --policy-config file, parsed before anything runs; a bad file is a usage error."""
    from scripts.offline.policy_gate import PolicyConfigError, load_policy_config
    path = getattr(ctx.args, "policy_config", None)
    if getattr(ctx.args, "no_policies", False) or path is None:
        return {}
    try:
        return load_policy_config(path)
    except PolicyConfigError as e:
        raise UsageError(str(e)) from None


def early_gate(ctx: Context):
    """The policy pack, started in the background before the program runs (None: --no-policies, or
    an unreadable stack file, which the program run then reports)."""
    from scripts.offline.policy_gate import PolicyGate
    if getattr(ctx.args, "no_policies", False):
        return None
    try:
        raw = read_stack_file(ctx.args.config_file or stack_file(ctx.args.stack))
    except ConfigError:
        return None
    return PolicyGate(stack_config=raw, stack=ctx.args.stack).start_in_background()


def judge(ctx: Context, raw, resources, config, gate=None):
    """Run the policy pack on `resources`; None with --no-policies."""
    from scripts.offline.policy_gate import PolicyConfigError, PolicyPackError, run_policy_gate
    if getattr(ctx.args, "no_policies", False):
        return None
    ctx.progress("running policy pack policies/ over the analyzer protocol")
    try:
        if gate is not None and gate.stack_config == dict(raw):
            return gate.evaluate(resources, config)
        return run_policy_gate(resources, raw, stack=ctx.args.stack, policy_config=config)
    except PolicyConfigError as e:
        raise UsageError(str(e)) from None
    except PolicyPackError as e:
        raise CommandError(str(e)) from None


def report_preview(ctx: Context, raw, resources, config=None, gate=None) -> int:
    """Judge and print what was declared. Tests hand in a changed resource list to reach this path."""
    from scripts.offline.policy_gate import format_violations
    result = judge(ctx, raw, resources, config or {}, gate)
    counts = summary(resources)
    lines = [
        f"Previewing stack '{ctx.args.stack}' offline (mock engine: no Pulumi CLI, no AWS calls)",
        "",
        render_tree(resources),
        "",
    ]
    document = {"stack": ctx.args.stack, "resources": [r.to_json() for r in in_tree_order(resources)],
                "summary": counts}
    if result is not None:
        lines += [format_violations(result), ""]
        document["policyPack"] = {"name": result.pack, "version": result.version}
        document["violations"] = [v.to_json() for v in result.violations]
    lines.append(f"Resources: + {counts['create']} to create ({counts['protected']} protected)")
    ctx.emit(document, "\n".join(lines))
    return EXIT_FAILED if result is not None and result.mandatory else EXIT_OK


def run_preview(ctx: Context) -> int:
    config = policy_config(ctx)
    gate = early_gate(ctx)  # the pack starts while the program runs
    try:
        raw, resources = declared_resources(ctx)
        return report_preview(ctx, raw, resources, config, gate)
    finally:
        if gate is not None:
            gate.close()
