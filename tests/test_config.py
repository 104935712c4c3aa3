"""The stack config: parsed once, every bad value stops with one line naming key, value and rule."""
import copy

import pytest
import yaml

from components.config import (
    AirGappedVault,
    ConfigError,
    ObjectLock,
    load_stack_config,
    parse_config,
    parse_snapshot_name,
    read_stack_file,
    split_namespaces,
    stack_file,
)
from components.naming import snapshot_name
from tests.fixtures.cli import launch


def _prod_raw():
    ours, region = split_namespaces(read_stack_file(stack_file("prod")))
    return copy.deepcopy(ours), region


def test_shipped_prod_config_parses_with_strategy_values():
    cfg = load_stack_config("prod")
    assert cfg.region == "ap-south-1"
    assert cfg.backup.retention_days == 7
    assert cfg.backup.vault_lock.mode == "governance"
    assert cfg.recycle_bin.lock is True and cfg.recycle_bin.retention_days == 7
    assert cfg.baselines[0].action == "php-upgrade"
    assert cfg.dumps.password_parameter.startswith("/")


def test_defaults_implement_the_strategy_when_keys_are_omitted():
    cfg = parse_config({"instanceId": "i-0a1b2c3d4e5f67890", "rootVolumeId": "vol-0f1e2d3c4b5a69788",
                        "elasticIpAllocationId": "eipalloc-0123456789abcdef0"})
    assert (cfg.backup.retention_days, cfg.recycle_bin.retention_days, cfg.recycle_bin.unlock_delay_days) == (7, 7, 7)
    assert cfg.backup.schedule == "cron(0 20 * * ? *)"
    assert cfg.dumps.database == "quickport_crm_laravel" and cfg.dumps.compression == "zstd"
    assert cfg.region == "ap-south-1"


@pytest.mark.parametrize("path, value, expected", [
    (("backup", "retentionDays"), 0,
     "quickport-backup:backup.retentionDays = 0: must be a whole number from 1 to 36500"),
    (("backup", "retentionDays"), -3, "backup.retentionDays = -3"),
    (("backup", "vaultLock", "mode"), "strict",
     "backup.vaultLock.mode = 'strict': must be one of governance, compliance"),
    (("recycleBin", "unlockDelayDays"), 3, "recycleBin.unlockDelayDays = 3: must be a whole number from 7 to 30"),
    (("recycleBin", "unlockDelayDays"), 31, "from 7 to 30"),
    (("recycleBin", "lock"), "yes", "recycleBin.lock = 'yes': must be true or false"),
    (("instanceId",), "i-123", "instanceId = 'i-123': must be an EC2 instance id"),
    (("rootVolumeId",), "vol-XYZ", "rootVolumeId = 'vol-XYZ'"),
    (("dumps", "compression"), "bzip2", "dumps.compression = 'bzip2': must be one of zstd, gzip"),
    (("dumps", "priority"), "fast", "dumps.priority = 'fast': must be one of low, idle, normal"),
    (("dumps", "verify"), "none", "dumps.verify = 'none': must be one of frames, decompress"),
    (("dumps", "bucketName"), "Bad_Bucket", "dumps.bucketName = 'Bad_Bucket'"),
    (("backup", "schedule"), "daily", "backup.schedule = 'daily': must be an AWS cron expression"),
    (("backup", "colour"), "blue", "backup.colour = 'blue': unknown key"),
    (("dumps", "prefix"), "restores/db", "dumps.prefix = 'restores/db': must not start with 'restores'"),
])
def test_bad_value_names_key_value_and_rule(path, value, expected):
    raw, region = _prod_raw()
    target = raw
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(ConfigError) as e:
        parse_config(raw, region=region)
    assert expected in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name, fragment", [
    ("prod-root-2026-02-30-before-php-upgrade", "2026-02-30 is not a calendar date"),
    ("prod-root-2026-11-20-before-PHP", "lowercase kebab-case"),
    ("prod-root-2026-11-20-php-upgrade", "must be prod-root-YYYY-MM-DD-before-<action>"),
    ("prod-root-2026-11-20-before-" + "a" * 49, "at most 48 characters"),
    ("prod-root-2026-11-20-before-double--hyphen", "lowercase kebab-case"),
])
def test_malformed_baseline_name_is_rejected(name, fragment):
    raw, region = _prod_raw()
    raw["baselines"][0]["name"] = name
    with pytest.raises(ConfigError) as e:
        parse_config(raw, region=region)
    assert fragment in str(e.value) and "baselines[0].name" in str(e.value)


def test_retention_outside_vault_lock_range_is_rejected():
    raw, region = _prod_raw()
    raw["backup"]["retentionDays"] = 60
    with pytest.raises(ConfigError, match=r"backup.retentionDays = 60: must lie within the vault lock range 7..35"):
        parse_config(raw, region=region)


def test_compliance_mode_defaults_changeable_days_and_governance_rejects_it():
    raw, region = _prod_raw()
    raw["backup"]["vaultLock"]["mode"] = "compliance"
    assert parse_config(raw, region=region).backup.vault_lock.changeable_for_days == 3
    raw["backup"]["vaultLock"] = {"mode": "governance", "changeableForDays": 5}
    with pytest.raises(ConfigError, match="only applies to mode compliance"):
        parse_config(raw, region=region)


def test_snapshot_name_round_trip():
    date, action = parse_snapshot_name("prod-root-2024-02-29-before-kernel-change")
    assert (date.isoformat(), action) == ("2024-02-29", "kernel-change")


def test_a_numbered_same_day_name_follows_the_rule_even_after_a_48_character_action():
    action = "a" * 48
    date, parsed = parse_snapshot_name(f"prod-root-2026-12-02-before-{action}-2")
    assert (date.isoformat(), parsed) == ("2026-12-02", f"{action}-2")
    assert snapshot_name(date, action, 2) == f"prod-root-2026-12-02-before-{action}-2"


def test_snapshots_retain_days_is_parsed_and_checked():
    raw, region = _prod_raw()
    raw["snapshots"] = {"retainDays": 45}
    assert parse_config(raw, region=region).snapshot_retain_days == 45
    raw["snapshots"] = {"retainDays": 0}
    with pytest.raises(ConfigError, match="snapshots.retainDays = 0: must be a whole number from 1 to 36500"):
        parse_config(raw, region=region)


def test_preview_exits_2_with_one_line_and_declares_nothing_on_bad_config(tmp_path):
    doc = yaml.safe_load(stack_file("prod").read_text())
    doc["config"]["quickport-backup:recycleBin"]["unlockDelayDays"] = 3
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    proc = launch("preview", "--json", "--config-file", str(bad), env={"PATH": "/usr/bin:/bin"})
    message = "quickport-backup:recycleBin.unlockDelayDays = 3: must be a whole number from 7 to 30"
    assert proc.code == 2
    # --json: still one document on stdout, and no resources in it.
    assert proc.json() == {"command": "preview", "ok": False, "exitCode": 2, "error": message}
    assert proc.err.strip().splitlines() == [f"backupctl preview: error: {message}"]


# --- object lock, air-gapped vault, guard rails, EBS encryption, monitoring ---------------------

def test_object_lock_defaults_to_governance_for_the_dump_retention():
    raw, region = _prod_raw()
    del raw["dumps"]["objectLock"]
    raw["dumps"]["retentionDays"] = 45
    assert parse_config(raw, region=region).dumps.object_lock == ObjectLock("governance", 45)


def test_object_lock_never_defaults_below_seven_days():
    raw, region = _prod_raw()
    del raw["dumps"]["objectLock"]
    raw["dumps"]["retentionDays"] = 3
    assert parse_config(raw, region=region).dumps.object_lock.days == 7


@pytest.mark.parametrize("path, value, expected", [
    (("dumps", "objectLock", "days"), 6, "dumps.objectLock.days = 6: must be a whole number from 7 to 36500"),
    (("dumps", "objectLock", "mode"), "legal-hold",
     "dumps.objectLock.mode = 'legal-hold': must be one of governance, compliance"),
    (("guardRails", "operatorGroups"), "quickport-operators",
     "guardRails.operatorGroups = 'quickport-operators': must be a list of an IAM group name"),
    (("guardRails", "operatorRoles"), ["ops admin"], "guardRails.operatorRoles[0] = 'ops admin': must be an IAM role"),
    (("guardRails", "operatorUsers"), ["asha", "asha"], "guardRails.operatorUsers = ['asha', 'asha']: must not "
                                                        "name the same one twice"),
    (("guardRails", "operatorTeams"), ["x"], "guardRails.operatorTeams = ['x']: unknown key"),
    (("ebsEncryption", "defaultKmsKey"), "alias/aws/ebs",
     "ebsEncryption.defaultKmsKey = 'alias/aws/ebs': must be aws-managed, stack, or a KMS key ARN"),
    (("monitoring", "trail"), "none", "monitoring.trail = 'none': must be one of create, existing"),
    (("binlog", "intervalSeconds"), 4, "binlog.intervalSeconds = 4: must be a whole number from 5 to 300"),
    (("binlog", "intervalSeconds"), 301, "binlog.intervalSeconds = 301: must be a whole number from 5 to 300"),
    (("binlog", "prefix"), "mysql/binlog",
     "binlog.prefix = 'mysql/binlog': must not start with files, mysql, restores"),
    (("binlog", "prefix"), "/binlog", "binlog.prefix = '/binlog': must be lowercase path segments"),
    (("binlog", "rpoBoundSeconds"), 10, "binlog.rpoBoundSeconds = 10: must be a whole number from 30 to 86400"),
    (("binlog", "enabled"), "yes", "binlog.enabled = 'yes': must be"),
    (("binlog", "shipEvery"), 5, "binlog.shipEvery = 5: unknown key"),
])
def test_new_keys_reject_bad_values_in_one_line(path, value, expected):
    raw, region = _prod_raw()
    target = raw
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value
    with pytest.raises(ConfigError) as e:
        parse_config(raw, region=region)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_shipped_config_attaches_the_guard_rails_to_a_placeholder_group():
    cfg = load_stack_config("prod")
    assert cfg.guard_rails.operator_groups == ("quickport-operators",)
    assert cfg.guard_rails.attached_to_anyone


def test_air_gapped_vault_needs_a_customer_managed_ebs_key():
    raw, region = _prod_raw()
    raw["backup"]["airGappedVault"] = {"minRetentionDays": 7, "maxRetentionDays": 35}
    with pytest.raises(ConfigError, match=r"^quickport-backup:ebsEncryption.defaultKmsKey = 'aws-managed': must "
                                          r"be stack or a customer managed key ARN when backup.airGappedVault"):
        parse_config(raw, region=region)
    raw["ebsEncryption"] = {"defaultKmsKey": "stack"}
    assert parse_config(raw, region=region).backup.air_gapped_vault == AirGappedVault(7, 35)


@pytest.mark.parametrize("vault, expected", [
    ({"minRetentionDays": 3}, "backup.airGappedVault.minRetentionDays = 3: must be a whole number from 7"),
    ({"minRetentionDays": 10, "maxRetentionDays": 8}, "maxRetentionDays = 8: must be at least minRetentionDays (10)"),
    ({"minRetentionDays": 14, "maxRetentionDays": 35},
     "backup.retentionDays = 7: must lie within the air-gapped vault's range 14..35 days"),
])
def test_air_gapped_vault_range_is_checked_against_the_daily_retention(vault, expected):
    raw, region = _prod_raw()
    raw["backup"]["airGappedVault"] = vault
    raw["ebsEncryption"] = {"defaultKmsKey": "stack"}
    with pytest.raises(ConfigError) as e:
        parse_config(raw, region=region)
    assert expected in str(e.value)


def test_an_existing_customer_managed_key_arn_is_accepted():
    raw, region = _prod_raw()
    arn = "arn:aws:kms:ap-south-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    raw["ebsEncryption"] = {"defaultKmsKey": arn}
    cfg = parse_config(raw, region=region)
    assert cfg.ebs_encryption.default_kms_key == arn and cfg.ebs_encryption.customer_managed


def test_binlog_defaults_keep_segments_a_week_longer_than_the_dumps():
    raw, region = _prod_raw()
    raw.pop("binlog", None)
    raw["dumps"]["retentionDays"] = 14
    cfg = parse_config(raw, region=region)
    assert (cfg.binlog.enabled, cfg.binlog.interval_seconds, cfg.binlog.retention_days) == (True, 30, 21)
    assert cfg.binlog.prefix == "binlog" and cfg.binlog.rpo_bound_seconds == 60


# --- hostile stack files (issue 9, item 6): bounded in time, memory and what they print -------------

def _alias_bomb() -> str:
    """The 'billion laughs' YAML: nine levels of nine aliases, under 2 KB, 9**9 strings if expanded."""
    lines = ["config:", '  quickport-backup:l0: &l0 ["' + "lol" * 40 + '"]']
    lines += [f"  quickport-backup:l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    # 'a-bomb' sorts first: an unknown-key error quotes it, as any error naming a value would.
    return "\n".join(lines + ["  quickport-backup:a-bomb: [" + ", ".join(["*l8"] * 9) + "]", ""])


def _hostile_files() -> dict[str, str]:
    prod = stack_file("prod").read_text()
    return {
        "alias-bomb": _alias_bomb(),
        "long-value": prod.replace("quickport-backup:instanceId: ", "quickport-backup:instanceId: " + "x" * 1_000_000
                                   + " # ", 1),
        "deep-nesting": "config:\n  quickport-backup:backup: " + "[" * 300_000 + "]" * 300_000 + "\n",
        "many-keys": "config:\n" + "".join(f"  quickport-backup:k{i}: {i}\n" for i in range(30_000)),
        "long-unknown-key": "config:\n  quickport-backup:" + "k" * 900_000 + ": 1\n",
        "numeric-key": "config:\n  5: five\n",
    }


@pytest.mark.parametrize("name", sorted(_hostile_files()))
def test_a_hostile_stack_file_fails_in_one_short_line_quickly_and_small(tmp_path, name):
    import time
    import tracemalloc
    text = _hostile_files()[name]
    path = tmp_path / "Pulumi.hostile.yaml"
    path.write_text(text)
    assert path.stat().st_size <= 1024 * 1024
    tracemalloc.start()
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_stack_config("hostile", path)
    elapsed = time.monotonic() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    message = str(caught.value)
    # Generous correctness bounds (the requirement is < 1 s on an idle machine), not a benchmark.
    assert (elapsed < 5, peak < 200 * 1024 * 1024, "\n" not in message, len(message) < 600) == \
        (True, True, True, True), (elapsed, peak, message[:300])


def test_an_alias_in_a_stack_file_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "Pulumi.alias.yaml"
    path.write_text(_alias_bomb())
    with pytest.raises(ConfigError, match=r"line 3: YAML aliases \(\*l0\) are not allowed"):
        read_stack_file(path)


def test_a_stack_file_over_one_mebibyte_is_refused_before_parsing(tmp_path):
    path = tmp_path / "Pulumi.big.yaml"
    path.write_text(stack_file("prod").read_text() + "#" * (1024 * 1024) + "\n")
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        read_stack_file(path)


def test_a_long_bad_value_is_printed_capped():
    raw, region = _prod_raw()
    raw["instanceId"] = "x" * 10_000
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, region=region)
    assert ("(10002 characters)" in str(caught.value), len(str(caught.value)) < 400) == (True, True)
