"""The project installs: `pip install .` gives a `backupctl` that works from any directory, and
pyproject.toml declares the same dependencies as requirements.txt (which Pulumi's pip toolchain reads)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _requirement_lines(text: str) -> set[str]:
    return {re.sub(r"\s+", "", line.split("#")[0]) for line in text.splitlines() if line.split("#")[0].strip()}


def test_pyproject_declares_exactly_the_requirements_txt_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = set(project["dependencies"]) | {d for extra in project["optional-dependencies"].values() for d in extra}
    assert {d.replace(" ", "") for d in declared} == _requirement_lines((ROOT / "requirements.txt").read_text())


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """`pip install --no-deps --target DIR .`: the package and its console script, nothing else (the
    dependencies are this interpreter's)."""
    source, target = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("installed")
    # A copy: setuptools builds in the source tree (build/, *.egg-info), which must stay clean.
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("components", "scripts"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
                    "--target", str(target), str(source)], check=True, capture_output=True, timeout=600)
    return target


def _run_installed(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(installed)   # the installed copy, not this checkout
    return subprocess.run([str(installed / "bin" / "backupctl"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_console_script_runs_the_installed_copy_not_the_checkout(installed, tmp_path):
    proc = _run_installed(installed, tmp_path, "--help")
    assert proc.returncode == 0 and "Operator CLI for the QuickPort" in proc.stdout
    assert not (installed / "scripts" / "backupctl").exists()   # the launcher is the checkout's, not installed
    assert (installed / "scripts" / "agent" / "quickport_dump.py").is_file()   # the SSM document embeds it


def test_installed_backupctl_works_against_aws_from_another_directory(installed, aws, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(ROOT / "Pulumi.prod.yaml", work / "Pulumi.prod.yaml")
    proc = _run_installed(installed, work, "list", "--json", "--log-file", str(tmp_path / "ops.jsonl"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"region": "ap-south-1", "snapshots": [], "lockError": None}


def test_installed_backupctl_reads_the_current_directorys_stack_config(installed, tmp_path):
    (tmp_path / "Pulumi.prod.yaml").write_text(
        (ROOT / "Pulumi.prod.yaml").read_text().replace("i-0a1b2c3d4e5f67890", "i-from-this-directory"))
    proc = _run_installed(installed, tmp_path, "audit", "--log-file", str(tmp_path / "ops.jsonl"))
    assert proc.returncode == 2 and "quickport-backup:instanceId = 'i-from-this-directory'" in proc.stderr


def test_installed_backupctl_without_a_stack_config_names_the_file_it_looked_for(installed, tmp_path):
    proc = _run_installed(installed, tmp_path, "audit", "--log-file", str(tmp_path / "ops.jsonl"))
    assert proc.returncode == 2
    assert f"{tmp_path / 'Pulumi.prod.yaml'}" in proc.stderr and "does not exist" in proc.stderr


def test_installed_backupctl_takes_the_config_file_flag_from_any_directory(installed, tmp_path):
    config = tmp_path / "Pulumi.mine.yaml"
    config.write_text((ROOT / "Pulumi.prod.yaml").read_text().replace("i-0a1b2c3d4e5f67890", "i-bogus"))
    proc = _run_installed(installed, tmp_path, "audit", "--config-file", str(config),
                          "--log-file", str(tmp_path / "ops.jsonl"))
    assert proc.returncode == 2 and "quickport-backup:instanceId = 'i-bogus'" in proc.stderr
