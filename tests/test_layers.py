"""The layers of scripts/ hold: who may import what (README "Layout", docs/architecture.md).

Imports are read from the source (every `import` statement, also inside functions), so a lazy
`import boto3` in a command is caught as surely as one at the top.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AWS_SDK = ("boto3", "botocore")


def imported_modules(source: str) -> set[str]:
    """Every module an `import` or `from ... import` statement in the source names (absolute)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def top(module: str) -> str:
    return module.split(".")[0]


def files_under(*parts: str) -> list[Path]:
    return sorted((ROOT.joinpath(*parts)).rglob("*.py"))


def offenders(files: list[Path], forbidden) -> list[str]:
    return [f"{path.relative_to(ROOT)} imports {module}" for path in files
            for module in sorted(imported_modules(path.read_text())) if forbidden(module)]


def test_the_scanner_sees_imports_inside_functions_and_from_imports():
    source = "import os\ndef f():\n    import boto3\n    from botocore.exceptions import ClientError\n"
    assert {"os", "boto3", "botocore.exceptions"} <= imported_modules(source)


@pytest.mark.parametrize("layer", ["commands", "workflows"])
def test_commands_and_workflows_never_import_the_aws_sdk(layer):
    assert offenders(files_under("scripts", layer), lambda m: top(m) in AWS_SDK) == []


def test_only_aws_agent_and_offline_import_the_aws_sdk_in_scripts():
    allowed = ("aws", "agent", "offline")
    files = [p for p in files_under("scripts") if p.relative_to(ROOT / "scripts").parts[0] not in allowed]
    assert files, "scripts/ lost its modules?"
    assert offenders(files, lambda m: top(m) in AWS_SDK) == []


def test_the_agent_imports_only_the_standard_library_and_boto3():
    """It runs on the instance (Python 3.9, stdlib + boto3), embedded verbatim by the SSM document."""
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    files = files_under("scripts", "agent")
    assert any(p.name == "quickport_dump.py" for p in files)
    assert offenders(files, lambda m: top(m) not in stdlib and top(m) not in AWS_SDK) == []


def test_workflows_never_reach_up_into_commands_or_the_cli():
    bad = ("scripts.commands", "scripts.cli")
    assert offenders(files_under("scripts", "workflows"), lambda m: m.startswith(bad)) == []


def test_aws_adapters_never_reach_up_into_workflows_or_commands():
    bad = ("scripts.workflows", "scripts.commands", "scripts.cli")
    assert offenders(files_under("scripts", "aws"), lambda m: m.startswith(bad)) == []


def test_components_never_import_the_operator_cli():
    """The Pulumi program reads the agent's file (to embed it) but imports nothing from scripts/."""
    assert offenders(files_under("components"), lambda m: top(m) == "scripts") == []


def test_the_policy_pack_imports_nothing_from_the_project():
    """It runs in its own environment under the Pulumi CLI (policies/venv)."""
    files = [p for p in files_under("policies") if "venv" not in p.parts]
    assert offenders(files, lambda m: top(m) in ("components", "scripts")) == []
