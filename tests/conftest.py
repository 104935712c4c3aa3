"""Shared fixtures: the Pulumi mock-engine harness, one moto server, one MariaDB server.

Each lives in tests/fixtures/<part>.py; no test depends on another's state.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest_plugins = [
    "tests.fixtures.pulumi_engine",
    "tests.fixtures.moto_server",
    "tests.fixtures.mariadb",
    "tests.fixtures.policy_pack",
]
