"""`backupctl preview` output that scripts and reviewers can rely on: a stable order, and a quiet end
when the reader of a pipe goes away."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _preview_json(backupctl) -> list[dict]:
    result = backupctl("preview", "--json", "--no-policies")
    assert result.code == 0, result.err
    return result.json()["resources"]


def test_preview_json_lists_each_components_children_sorted_by_type_and_name(backupctl):
    resources = _preview_json(backupctl)
    by_parent: dict[str, list[tuple[str, str]]] = {}
    for r in resources:
        by_parent.setdefault(r["parent"], []).append((r["type"], r["name"]))
    assert len(by_parent) > 3
    assert {parent: sorted(kids) for parent, kids in by_parent.items()} == by_parent


def test_preview_json_puts_every_child_after_its_parent(backupctl):
    seen: set[str] = set()
    resources = _preview_json(backupctl)
    urns = {r["urn"] for r in resources}
    for r in resources:
        assert r["parent"] not in urns or r["parent"] in seen, f"{r['urn']} comes before its parent"
        seen.add(r["urn"])


def test_two_previews_list_the_resources_identically(backupctl):
    assert [r["urn"] for r in _preview_json(backupctl)] == [r["urn"] for r in _preview_json(backupctl)]


@pytest.mark.parametrize("args", [["preview", "--json", "--no-policies"], ["preview", "--no-policies"]])
def test_a_closed_pipe_ends_preview_quietly(args):
    """`backupctl preview --json | head -c 1`: exit 0 or 141 (SIGPIPE), never a traceback."""
    env = {**os.environ, "QUICKPORT_NO_VENV": "1"}
    launcher = [sys.executable, str(ROOT / "scripts" / "backupctl"), *args]
    proc = subprocess.run(["bash", "-c", '"$@" | head -c 1 >/dev/null; exit "${PIPESTATUS[0]}"', "pipe", *launcher],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 141), proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
