"""Shared fixtures, each part we test against in a module of its own under tests/fixtures/: the Pulumi
mock engine, the policy pack, the stand-in AWS account on one emulator, one MariaDB server, and the CLI.

They are wired here only; test modules import helpers and constants from them, never fixtures.
No test depends on another's state.
"""

pytest_plugins = [
    "tests.fixtures.pulumi_engine",
    "tests.fixtures.policy_pack",
    "tests.fixtures.aws_account",
    "tests.fixtures.mariadb",
    "tests.fixtures.cli",
]
