"""Unit tests of the rule functions and their helpers, called as the pulumi_policy SDK calls them."""
from __future__ import annotations

import json

import pytest
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

import tests.fixtures.policy_pack  # noqa: F401  puts policies/ on sys.path
from quickport_policies import rules, shapes


def options(protect: bool = True) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def resource_args(type_: str, props: dict, *, name: str = "r", protect: bool = True,
                  config: dict | None = None) -> ResourceValidationArgs:
    return ResourceValidationArgs(type_, unknown_checking_proxy(props), f"urn:pulumi:prod::p::{type_}::{name}",
                                  name, options(protect), None, config)


def stack_resource(type_: str, props: dict, name: str = "r") -> PolicyResource:
    return PolicyResource(type_, unknown_checking_proxy(props), f"urn:pulumi:prod::p::{type_}::{name}", name,
                          options(), None, None, [], {})


def collect(rule, args) -> list[str]:
    messages: list[str] = []
    rule(args, lambda message, urn=None: messages.append(message))
    return messages


# --- helpers ---------------------------------------------------------------------------------------

def test_prop_reads_a_camel_case_path_through_lists():
    props = {"rules": [{"lifecycle": {"deleteAfter": 7}}]}
    assert shapes.prop(props, "rules.0.lifecycle.deleteAfter") == 7


def test_prop_gives_default_for_a_missing_path():
    assert shapes.prop({"rules": []}, "rules.0.schedule", "none") == "none"


def test_prop_raises_the_sdk_unknown_error_for_a_preview_unknown():
    with pytest.raises(UnknownValueError):
        shapes.prop(unknown_checking_proxy({"policy": UNKNOWN_STRING_VALUE}), "policy")


@pytest.mark.parametrize("schedule", ["cron(0 20 * * ? *)", "cron(30 */6 ? * * *)", "cron(0 1 ? * MON-SUN *)",
                                      "rate(1 day)", "rate(12 hours)"])
def test_daily_or_more_frequent_schedules_run_at_least_daily(schedule):
    assert shapes.runs_at_least_daily(schedule)


@pytest.mark.parametrize("schedule", ["cron(0 20 ? * SUN *)", "cron(0 20 1 * ? *)", "cron(0 20 * 1 ? *)",
                                      "cron(0 20 * * ? 2027)", "rate(2 days)", "rate(0 hours)", None, "daily"])
def test_less_than_daily_or_unreadable_schedules_do_not_run_daily(schedule):
    assert not shapes.runs_at_least_daily(schedule)


def test_leap_day_baseline_name_is_valid():
    assert shapes.baseline_name_problem("prod-root-2028-02-29-before-kernel-upgrade", "prod-root", 48) is None


def test_baseline_name_with_uppercase_action_is_rejected():
    problem = shapes.baseline_name_problem("prod-root-2026-11-20-before-PHP", "prod-root", 48)
    assert "lowercase words" in problem


def test_baseline_name_with_overlong_action_is_rejected():
    problem = shapes.baseline_name_problem("prod-root-2026-11-20-before-" + "a" * 49, "prod-root", 48)
    assert "49 characters, at most 48" in problem


def test_baseline_name_numbered_for_a_same_day_rerun_is_valid():
    assert shapes.baseline_name_problem("prod-root-2026-11-20-before-" + "a" * 48 + "-2", "prod-root", 48) is None


def test_deny_with_not_action_covers_nothing():
    statement = {"Effect": "Deny", "Principal": "*", "NotAction": "backup:List*"}
    assert shapes.denied_actions(statement, ["backup:DeleteRecoveryPoint"]) == set()


def test_deny_to_one_role_covers_nothing():
    statement = {"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::1:role/x"},
                 "Action": "backup:DeleteRecoveryPoint"}
    assert shapes.denied_actions(statement, ["backup:DeleteRecoveryPoint"]) == set()


def test_action_wildcards_match_case_insensitively():
    statement = {"Effect": "Deny", "Principal": "*", "Action": "BACKUP:delete*"}
    assert shapes.denied_actions(statement, ["backup:DeleteRecoveryPoint"]) == {"backup:DeleteRecoveryPoint"}


def test_tls_deny_needs_secure_transport_false():
    statement = {"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                 "Condition": {"Bool": {"aws:SecureTransport": "true"}}}
    assert not shapes.denies_insecure_transport(statement)


# --- resource rules --------------------------------------------------------------------------------

def test_retention_rule_reads_its_threshold_from_config():
    args = resource_args(shapes.BACKUP_PLAN, {"rules": [{"ruleName": "d", "lifecycle": {"deleteAfter": 10.0}}]},
                         config={"minRetentionDays": 14.0})
    assert collect(rules.backup_retention_minimum, args) == [
        "backup rule 'd' keeps recovery points 10 days; the strategy requires at least 14"]


def test_retention_rule_without_lifecycle_keeps_forever_and_passes():
    args = resource_args(shapes.BACKUP_PLAN, {"rules": [{"ruleName": "d", "schedule": "cron(0 1 * * ? *)"}]})
    assert collect(rules.backup_retention_minimum, args) == []


def test_backup_rule_without_schedule_is_not_daily():
    args = resource_args(shapes.BACKUP_PLAN, {"rules": [{"ruleName": "d"}]})
    assert collect(rules.backup_schedule_at_least_daily, args) == [
        "backup rule 'd' runs on schedule None; the strategy requires at least one run every day, "
        "e.g. cron(0 20 * * ? *)"]


def test_protection_rule_ignores_unprotected_ordinary_resources():
    args = resource_args("aws:sns/topic:Topic", {"name": "alerts"}, protect=False)
    assert collect(rules.critical_resources_protected, args) == []


def test_protection_rule_recognises_snapshot_lock_with_unknown_snapshot_id():
    args = resource_args("pulumi-python:dynamic/quickport:EbsSnapshotLock",
                         {"snapshot_id": UNKNOWN_STRING_VALUE, "mode": "governance"}, name="l", protect=False)
    assert collect(rules.critical_resources_protected, args) == [
        "snapshot lock 'l' has protect: false; the strategy requires protect: true "
        "(pulumi.ResourceOptions(protect=True)) so no destroy or replace can delete it"]


def test_lifecycle_expiring_on_fixed_date_is_rejected():
    args = resource_args(shapes.S3_LIFECYCLE, {"rules": [
        {"id": "x", "status": "Enabled", "expiration": {"date": "2027-01-01T00:00:00Z"}}]})
    assert "fixed date 2027-01-01" in collect(rules.dump_retention_minimum, args)[0]


@pytest.mark.parametrize("line", [
    "mariadb-dump --defaults-extra-file=/run/quickport/backup.cnf quickport",
    "mysqldump -u backup -p quickport",
    "python3 quickport_dump.py db --password-parameter /quickport/prod/mysql/backup-password",
    "printf '[client]\\npassword=%s\\n' \"$PW\" > /run/b.cnf",
    "mkdir -p /var/backups/mysql",
])
def test_password_references_are_not_inline_secrets(line):
    args = resource_args(shapes.SSM_DOCUMENT, {"content": json.dumps({"mainSteps": [
        {"inputs": {"runCommand": [line]}}]})})
    assert collect(rules.no_inline_secrets, args) == []


@pytest.mark.parametrize("line,problem", [
    ("mysqldump -u backup -p\"$PW\" quickport", "command line (-p"),
    ("mariadb-dump --password=hunter2 quickport", "command line (--password="),
    ("MYSQL_PWD=hunter2 mysqldump quickport", "command line (MYSQL_PWD="),
    ("export MYSQL_PWD=hunter2", "literal MYSQL_PWD assignment"),
])
def test_passwords_on_command_lines_and_in_assignments_are_inline_secrets(line, problem):
    args = resource_args(shapes.SSM_DOCUMENT, {"content": json.dumps({"mainSteps": [
        {"inputs": {"runCommand": [line]}}]})})
    assert problem in collect(rules.no_inline_secrets, args)[0]


def test_document_parameter_with_literal_password_default_is_an_inline_secret():
    content = json.dumps({"parameters": {"DbPassword": {"type": "String", "default": "s3cret"}}})
    args = resource_args(shapes.SSM_DOCUMENT, {"content": content})
    assert "a literal value for 'DbPassword'" in collect(rules.no_inline_secrets, args)[0]


def test_yaml_document_with_password_line_is_an_inline_secret():
    args = resource_args(shapes.SSM_DOCUMENT, {"content": "parameters:\n  password: hunter2\n"})
    assert "literal password assignment" in collect(rules.no_inline_secrets, args)[0]


# --- stack rules -----------------------------------------------------------------------------------

def test_vault_lock_linked_by_literal_name_counts():
    vault = stack_resource(shapes.BACKUP_VAULT, {"name": "v"}, "vault")
    lock = stack_resource(shapes.BACKUP_VAULT_LOCK, {"backupVaultName": "v", "minRetentionDays": 7.0}, "lock")
    args = StackValidationArgs([vault, lock], {})
    assert collect(rules.backup_vault_locked, args) == []


def test_vault_lock_of_another_vault_does_not_count():
    vault = stack_resource(shapes.BACKUP_VAULT, {"name": "v"}, "vault")
    lock = stack_resource(shapes.BACKUP_VAULT_LOCK, {"backupVaultName": "other", "minRetentionDays": 7.0})
    args = StackValidationArgs([vault, lock], {})
    assert collect(rules.backup_vault_locked, args)[0].startswith("backup vault 'v' has no vault lock")


def test_recycle_bin_rule_for_amis_only_does_not_cover_snapshots():
    ami_rule = stack_resource(shapes.RBIN_RULE, {"resourceType": "EC2_IMAGE", "retentionPeriod": {
        "retentionPeriodUnit": "DAYS", "retentionPeriodValue": 30.0}})
    args = StackValidationArgs([ami_rule], {})
    assert collect(rules.recycle_bin_retention_minimum, args)[0].startswith("no Recycle Bin rule for EBS_SNAPSHOT")


def test_pack_imports_nothing_from_the_project():
    """The pack runs in its own environment under the CLI: only the SDKs and itself."""
    import ast

    from components.config import REPO_ROOT
    imported = set()
    for path in (REPO_ROOT / "policies").rglob("*.py"):
        if "venv" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    assert imported & {"components", "scripts", "tests"} == set()
    assert {"pulumi_policy", "quickport_policies"} <= imported


def _selection(resources: list, not_resources: list | None = None) -> PolicyResource:
    props = {"resources": resources, **({"notResources": not_resources} if not_resources else {})}
    return stack_resource(shapes.BACKUP_SELECTION, props, "sel")


def test_instance_listed_and_excluded_by_wildcard_is_not_in_the_backup_plan():
    arn = "arn:aws:ec2:ap-south-1:123456789012:instance/i-0a1b2c3d4e5f67890"
    args = StackValidationArgs([_selection([arn], ["arn:aws:ec2:*:*:instance/*"])],
                               {"instanceId": "i-0a1b2c3d4e5f67890"})
    assert collect(rules.root_volume_in_backup_plan, args) == [
        "instance i-0a1b2c3d4e5f67890 is not in any backup plan: the stack has 1 backup selection(s), none "
        "listing it by ARN without excluding it in notResources; the strategy requires a selection whose "
        "resources include its ARN"]


def test_excluding_another_instance_keeps_the_production_instance_in_the_plan():
    arn = "arn:aws:ec2:ap-south-1:123456789012:instance/i-0a1b2c3d4e5f67890"
    args = StackValidationArgs([_selection([arn], ["arn:aws:ec2:*:*:instance/i-0ffffffffffffffff"])],
                               {"instanceId": "i-0a1b2c3d4e5f67890"})
    assert collect(rules.root_volume_in_backup_plan, args) == []


def test_tls_deny_of_only_some_s3_actions_is_not_tls_only():
    statement = {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
                 "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    assert not shapes.denies_insecure_transport(statement)


def test_tls_deny_of_every_s3_action_is_tls_only():
    statement = {"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                 "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    assert shapes.denies_insecure_transport(statement)
