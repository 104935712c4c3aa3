"""`backupctl preview`: what `pulumi preview` would declare, computed offline on the mock engine."""
from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from components.config import ConfigError, load_stack_config, read_stack_file, stack_file
from scripts.common import EXIT_OK, Context, UsageError, add_common_options

HELP = """\
Run the Pulumi program on the SDK's mock engine with the stack's config (no Pulumi CLI, no AWS
credentials) and print the resource tree as `pulumi preview` would: type, name, parent, protect.
Exit 0 on success, 2 on a config error (one line naming the key, the value and what is allowed)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preview", help="offline preview of the stack's resources", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_options(p, aws=False)
    p.set_defaults(handler=run_preview)


def declared_resources(ctx: Context):
    """Validate the stack file, then run the program on the mock engine. Config errors exit 2."""
    import pulumi
    from scripts.offline_engine import run_stack_program

    path = ctx.args.config_file or stack_file(ctx.args.stack)
    try:
        load_stack_config(ctx.args.stack, path)  # catches unknown keys the program would ignore
        raw = read_stack_file(path)
        return raw, run_stack_program(raw, stack=ctx.args.stack)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    except pulumi.RunError as e:
        raise UsageError(str(e)) from None


def render_tree(resources) -> str:
    """An indented tree of type, name and options, children under their component."""
    by_parent: dict[str, list] = {}
    urns = {r.urn for r in resources}
    for r in resources:
        by_parent.setdefault(r.parent if r.parent in urns else "", []).append(r)
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


def run_preview(ctx: Context) -> int:
    _, resources = declared_resources(ctx)
    counts = summary(resources)
    text = "\n".join([
        f"Previewing stack '{ctx.args.stack}' offline (mock engine: no Pulumi CLI, no AWS calls)",
        "",
        render_tree(resources),
        "",
        f"Resources: + {counts['create']} to create ({counts['protected']} protected)",
    ])
    ctx.emit({"stack": ctx.args.stack, "resources": [r.to_json() for r in resources],
              "summary": counts}, text)
    return EXIT_OK
