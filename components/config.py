"""The stack configuration: one typed object, parsed and validated once.

Every value the program, the policy pack and the operator CLI need comes from here. A bad value
raises ConfigError with one line naming the key (as written in Pulumi.<stack>.yaml), the value and
what is allowed, before any resource is declared.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from components.errors import ConfigError
from components.naming import RESTORES_PREFIX, parse_snapshot_name
from components.tags import NAMESPACE

DEFAULT_REGION = "ap-south-1"
REPO_ROOT = Path(__file__).resolve().parent.parent

LOCK_MODES = ("governance", "compliance")
COMPRESSIONS = ("zstd", "gzip")
DUMP_PRIORITIES = ("low", "idle", "normal")   # scripts/agent/quickport_dump.py PRIORITIES
DUMP_VERIFY_MODES = ("frames", "decompress")   # scripts/agent/quickport_dump.py VERIFY_MODES

_ID_RE = {
    "instance": re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$"),
    "volume": re.compile(r"^vol-(?:[0-9a-f]{8}|[0-9a-f]{17})$"),
    "eipalloc": re.compile(r"^eipalloc-(?:[0-9a-f]{8}|[0-9a-f]{17})$"),
}
# AWS Backup, EventBridge and SSM State Manager share this six-field cron form.
CRON_RE = re.compile(r"^cron\((\S+ ){5}\S+\)$")
REGION_RE = re.compile(r"^[a-z]{2}(?:-gov)?-[a-z]+-\d$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
BUCKET_RE = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
SSM_PARAMETER_RE = re.compile(r"^/?[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)*$")
DATABASE_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*(?:/[a-z0-9][a-z0-9._-]*)*$")
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,50}$")
IAM_ROLE_RE = re.compile(r"^[\w+=,.@-]{1,64}$")
IAM_GROUP_RE = re.compile(r"^[\w+=,.@-]{1,128}$")
KMS_KEY_ARN_RE = re.compile(r"^arn:aws[a-z-]*:kms:[a-z]{2}(?:-gov)?-[a-z]+-\d:\d{12}:key/[0-9a-f-]{36}$")
OBJECT_LOCK_MIN_DAYS = 7          # the strategy's floor for anything that keeps backups
EBS_KEY_CHOICES = ("aws-managed", "stack")
TRAIL_CHOICES = ("create", "existing")


# --- value checks: each returns the clean value or raises ConfigError naming the key --------------

MAX_SHOWN = 200   # characters of a bad value an error line quotes


def capped(value: Any, limit: int = MAX_SHOWN) -> str:
    """repr(value) cut to `limit` characters: an error stays one readable line whatever was pasted."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _err(key: str, value: Any, allowed: str) -> ConfigError:
    key = key if len(key) <= MAX_SHOWN else key[:MAX_SHOWN] + "..."   # an unknown key is user text too
    return ConfigError(f"{NAMESPACE}:{key} = {capped(value)}: {allowed}")


def _int(key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _err(key, value, f"must be a whole number from {lo} to {hi}")
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _err(key, value, "must be true or false")
    return value


def _match(key: str, value: Any, pattern: re.Pattern, allowed: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise _err(key, value, allowed)
    return value


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _err(key, value, "must be one of " + ", ".join(choices))
    return value


def _mapping(key: str, value: Any, known: tuple[str, ...]) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _err(key, value, "must be a mapping with keys " + ", ".join(known))
    unknown = sorted(set(value) - set(known), key=str)   # str: YAML keys may be numbers too
    if unknown:
        raise _err(f"{key}.{unknown[0]}" if key else str(unknown[0]), value[unknown[0]],
                   "unknown key; allowed keys are " + ", ".join(known))
    return value


# --- the typed configuration ---------------------------------------------------------------------

@dataclass(frozen=True)
class VaultLock:
    mode: str = "governance"          # governance: removable by privileged IAM; compliance: by nobody
    min_retention_days: int = 7       # recovery points cannot be kept shorter than this
    max_retention_days: int = 35      # nor longer (keeps a typo from keeping data for years)
    changeable_for_days: Optional[int] = None  # compliance only: grace days before the lock is final


@dataclass(frozen=True)
class AirGappedVault:
    min_retention_days: int = 7       # AWS's floor for a logically air-gapped vault
    max_retention_days: int = 35      # the daily copy's lifecycle must lie in min..max


@dataclass(frozen=True)
class BackupConfig:
    vault_name: str = "quickport-prod-vault"
    plan_name: str = "quickport-prod-daily"
    schedule: str = "cron(0 20 * * ? *)"   # 20:00 UTC = 01:30 IST, the quietest hour
    retention_days: int = 7
    vault_lock: VaultLock = field(default_factory=VaultLock)
    alert_email: Optional[str] = None
    copy_to_region: Optional[str] = None
    air_gapped_vault: Optional[AirGappedVault] = None   # None: no logically air-gapped copy


@dataclass(frozen=True)
class RecycleBinConfig:
    retention_days: int = 7
    lock: bool = True
    unlock_delay_days: int = 7


@dataclass(frozen=True)
class SnapshotLock:
    mode: str = "governance"
    days: int = 30
    cool_off_hours: int = 0   # compliance only: hours in which a compliance lock can still be removed


@dataclass(frozen=True)
class Baseline:
    name: str
    volume_id: str
    lock: SnapshotLock
    date: dt.date
    action: str


@dataclass(frozen=True)
class ObjectLock:
    mode: str = "governance"          # governance: s3:BypassGovernanceRetention can lift it; compliance: nobody
    days: int = 30                    # default retention of every object version (dumps.retentionDays)


@dataclass(frozen=True)
class DumpConfig:
    bucket_name: str = "quickport-prod-db-dumps"
    prefix: str = "mysql"
    files_prefix: str = "files"
    database: str = "quickport_crm_laravel"
    schedule: str = "cron(30 20 * * ? *)"   # 30 minutes after the snapshot window
    retention_days: int = 30
    noncurrent_retention_days: int = 7
    password_parameter: str = "/quickport/prod/mysql/backup-password"
    user: str = "backup"
    compression: str = "zstd"
    object_lock: ObjectLock = field(default_factory=ObjectLock)
    priority: str = "low"                   # the dump pipeline's nice/ionice: low, idle or normal
    verify: str = "frames"                  # before publishing: walk zstd's frames, or decompress it all again


@dataclass(frozen=True)
class GuardRailsConfig:
    """Who gets the deny-only operator policy attached (IAM names, not ARNs)."""
    operator_groups: tuple[str, ...] = ()
    operator_roles: tuple[str, ...] = ()
    operator_users: tuple[str, ...] = ()

    @property
    def attached_to_anyone(self) -> bool:
        return bool(self.operator_groups or self.operator_roles or self.operator_users)


@dataclass(frozen=True)
class EbsEncryptionConfig:
    # "aws-managed": new volumes use the aws/ebs key; "stack": a rotating customer managed key the
    # stack creates; or the ARN of an existing customer managed key.
    default_kms_key: str = "aws-managed"

    @property
    def customer_managed(self) -> bool:
        return self.default_kms_key != "aws-managed"


@dataclass(frozen=True)
class MonitoringConfig:
    # "create": the stack declares a CloudTrail trail (API-call alerts need one that logs management
    # events); "existing": the account already has one logging in this region (a second costs money).
    trail: str = "create"
    trail_bucket_name: str = "quickport-prod-db-dumps-trail"   # default: <dumps.bucketName>-trail


@dataclass(frozen=True)
class BinlogConfig:
    """Point-in-time recovery: the binlog shipper on the instance (docs/pitr.md)."""
    enabled: bool = True
    prefix: str = "binlog"                  # key prefix of shipped segments in the dump bucket
    interval_seconds: int = 30              # how often new binlog events are shipped (the RPO's main part)
    retention_days: int = 37                # default: dumps.retentionDays + 7; must cover the dumps
    spool_megabytes: int = 1024             # local spool bound while S3 is unreachable
    rpo_bound_seconds: int = 60             # db-restore-drill --pitr fails above it
    apply_server_settings: bool = False     # write the drop-in option file; never restarts the server
    user: str = "binlog"
    password_parameter: str = "/quickport/prod/mysql/binlog-password"


@dataclass(frozen=True)
class StackConfig:
    region: str
    instance_id: str
    root_volume_id: str
    elastic_ip_allocation_id: str
    instance_role_name: str
    backup: BackupConfig
    recycle_bin: RecycleBinConfig
    baselines: tuple[Baseline, ...]
    dumps: DumpConfig
    files: tuple[str, ...]
    stack: str = "prod"
    guard_rails: GuardRailsConfig = field(default_factory=GuardRailsConfig)
    ebs_encryption: EbsEncryptionConfig = field(default_factory=EbsEncryptionConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    binlog: BinlogConfig = field(default_factory=BinlogConfig)
    snapshot_retain_days: int = 30      # snapshots.retainDays: the CLI's RetainUntil tag, `prune` after it


TOP_LEVEL_KEYS = ("instanceId", "rootVolumeId", "elasticIpAllocationId", "instanceRoleName",
                  "backup", "recycleBin", "baselines", "dumps", "files", "guardRails", "ebsEncryption",
                  "monitoring", "binlog", "snapshots")
DEFAULT_FILES = ("/var/www/quickport/.env", "/opt/gt06-server")


def _parse_vault_lock(raw: Any, retention_days: int) -> VaultLock:
    key = "backup.vaultLock"
    v = _mapping(key, raw, ("mode", "minRetentionDays", "maxRetentionDays", "changeableForDays"))
    mode = _choice(f"{key}.mode", v.get("mode", "governance"), LOCK_MODES)
    lo = _int(f"{key}.minRetentionDays", v.get("minRetentionDays", 7), 1, 36500)
    hi = _int(f"{key}.maxRetentionDays", v.get("maxRetentionDays", 35), 1, 36500)
    if hi < lo:
        raise _err(f"{key}.maxRetentionDays", hi, f"must be at least minRetentionDays ({lo})")
    if not lo <= retention_days <= hi:
        # AWS Backup fails every job whose lifecycle is outside the lock's range.
        raise _err("backup.retentionDays", retention_days,
                   f"must lie within the vault lock range {lo}..{hi} days")
    changeable = v.get("changeableForDays")
    if mode == "compliance":
        changeable = _int(f"{key}.changeableForDays", 3 if changeable is None else changeable, 3, 36500)
    elif changeable is not None:
        raise _err(f"{key}.changeableForDays", changeable,
                   "only applies to mode compliance; remove it for governance")
    return VaultLock(mode, lo, hi, changeable)


def _parse_air_gapped_vault(raw: Any, retention_days: int) -> Optional[AirGappedVault]:
    if raw is None:
        return None
    key = "backup.airGappedVault"
    v = _mapping(key, raw, ("minRetentionDays", "maxRetentionDays"))
    lo = _int(f"{key}.minRetentionDays", v.get("minRetentionDays", 7), 7, 36500)
    hi = _int(f"{key}.maxRetentionDays", v.get("maxRetentionDays", 35), 7, 36500)
    if hi < lo:
        raise _err(f"{key}.maxRetentionDays", hi, f"must be at least minRetentionDays ({lo})")
    if not lo <= retention_days <= hi:
        # The daily copy keeps backup.retentionDays; the vault refuses copies outside its range.
        raise _err("backup.retentionDays", retention_days,
                   f"must lie within the air-gapped vault's range {lo}..{hi} days")
    return AirGappedVault(lo, hi)


def _parse_backup(raw: Any) -> BackupConfig:
    b = _mapping("backup", raw, ("vaultName", "planName", "schedule", "retentionDays", "vaultLock",
                                 "alertEmail", "copyToRegion", "airGappedVault"))
    d = BackupConfig()
    retention = _int("backup.retentionDays", b.get("retentionDays", d.retention_days), 1, 36500)
    copy_region = b.get("copyToRegion")
    email = b.get("alertEmail")
    return BackupConfig(
        vault_name=_match("backup.vaultName", b.get("vaultName", d.vault_name), NAME_RE,
                          "must be 1-50 letters, digits, hyphens or underscores"),
        plan_name=_match("backup.planName", b.get("planName", d.plan_name), NAME_RE,
                         "must be 1-50 letters, digits, hyphens or underscores"),
        schedule=_match("backup.schedule", b.get("schedule", d.schedule), CRON_RE,
                        "must be an AWS cron expression with six fields, e.g. 'cron(0 20 * * ? *)'"),
        retention_days=retention,
        vault_lock=_parse_vault_lock(b.get("vaultLock"), retention),
        alert_email=None if email is None else _match(
            "backup.alertEmail", email, EMAIL_RE, "must be an email address"),
        copy_to_region=None if copy_region is None else _match(
            "backup.copyToRegion", copy_region, REGION_RE, "must be an AWS region name, e.g. ap-southeast-1"),
        air_gapped_vault=_parse_air_gapped_vault(b.get("airGappedVault"), retention),
    )


def _parse_recycle_bin(raw: Any) -> RecycleBinConfig:
    r = _mapping("recycleBin", raw, ("retentionDays", "lock", "unlockDelayDays"))
    return RecycleBinConfig(
        retention_days=_int("recycleBin.retentionDays", r.get("retentionDays", 7), 1, 365),
        lock=_bool("recycleBin.lock", r.get("lock", True)),
        unlock_delay_days=_int("recycleBin.unlockDelayDays", r.get("unlockDelayDays", 7), 7, 30),
    )


def _parse_snapshot_retain_days(raw: Any) -> int:
    return _int("snapshots.retainDays", _mapping("snapshots", raw, ("retainDays",)).get("retainDays", 30), 1, 36500)


def _parse_snapshot_lock(key: str, raw: Any) -> SnapshotLock:
    v = _mapping(key, raw, ("mode", "days", "coolOffHours"))
    mode = _choice(f"{key}.mode", v.get("mode", "governance"), LOCK_MODES)
    days = _int(f"{key}.days", v.get("days", 30), 1, 36500)
    cool_off = v.get("coolOffHours", 0)
    if mode == "governance" and cool_off:
        raise _err(f"{key}.coolOffHours", cool_off, "only applies to mode compliance")
    return SnapshotLock(mode, days, _int(f"{key}.coolOffHours", cool_off, 0, 72))


def _parse_baselines(raw: Any) -> tuple[Baseline, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _err("baselines", raw, "must be a list of {name, volumeId, lock}")
    seen: set[str] = set()
    out = []
    for i, item in enumerate(raw):
        key = f"baselines[{i}]"
        b = _mapping(key, item, ("name", "volumeId", "lock"))
        if "name" not in b:
            raise _err(f"{key}.name", None, "is required: prod-root-YYYY-MM-DD-before-<action>")
        try:
            date, action = parse_snapshot_name(b["name"], key=f"{NAMESPACE}:{key}.name")
        except ConfigError as e:
            raise ConfigError(str(e)) from None
        if b["name"] in seen:
            raise _err(f"{key}.name", b["name"], "must be unique among baselines")
        seen.add(b["name"])
        out.append(Baseline(
            name=b["name"],
            volume_id=_match(f"{key}.volumeId", b.get("volumeId"), _ID_RE["volume"],
                             "must be an EBS volume id, vol- followed by 8 or 17 hex digits"),
            lock=_parse_snapshot_lock(f"{key}.lock", b.get("lock")),
            date=date, action=action))
    return tuple(out)


def _parse_object_lock(raw: Any, retention_days: int) -> ObjectLock:
    key = "dumps.objectLock"
    v = _mapping(key, raw, ("mode", "days"))
    return ObjectLock(
        mode=_choice(f"{key}.mode", v.get("mode", "governance"), LOCK_MODES),
        days=_int(f"{key}.days", v.get("days", max(OBJECT_LOCK_MIN_DAYS, retention_days)),
                  OBJECT_LOCK_MIN_DAYS, 36500))


def _parse_dumps(raw: Any) -> DumpConfig:
    d = _mapping("dumps", raw, ("bucketName", "prefix", "filesPrefix", "database", "schedule",
                                "retentionDays", "noncurrentRetentionDays", "passwordParameter",
                                "user", "compression", "objectLock", "priority", "verify"))
    dflt = DumpConfig()
    retention = _int("dumps.retentionDays", d.get("retentionDays", dflt.retention_days), 1, 36500)
    prefix_rule = "must be lowercase path segments of a-z, 0-9, '.', '_' or '-' without leading or trailing '/'"
    cfg = DumpConfig(
        bucket_name=_match("dumps.bucketName", d.get("bucketName", dflt.bucket_name), BUCKET_RE,
                           "must be a valid S3 bucket name (3-63 lowercase letters, digits, '.', '-')"),
        prefix=_match("dumps.prefix", d.get("prefix", dflt.prefix), PREFIX_RE, prefix_rule),
        files_prefix=_match("dumps.filesPrefix", d.get("filesPrefix", dflt.files_prefix), PREFIX_RE,
                            prefix_rule),
        database=_match("dumps.database", d.get("database", dflt.database), DATABASE_RE,
                        "must be a MariaDB database name of 1-64 letters, digits or underscores"),
        schedule=_match("dumps.schedule", d.get("schedule", dflt.schedule), CRON_RE,
                        "must be an AWS cron expression with six fields, e.g. 'cron(30 20 * * ? *)'"),
        retention_days=retention,
        noncurrent_retention_days=_int("dumps.noncurrentRetentionDays",
                                       d.get("noncurrentRetentionDays", dflt.noncurrent_retention_days),
                                       1, 36500),
        password_parameter=_match(
            "dumps.passwordParameter", d.get("passwordParameter", dflt.password_parameter), SSM_PARAMETER_RE,
            "must be the name of an SSM SecureString parameter, e.g. /quickport/prod/mysql/backup-password"),
        user=_match("dumps.user", d.get("user", dflt.user), re.compile(r"^[A-Za-z0-9_]{1,80}$"),
                    "must be a MariaDB user name of letters, digits or underscores"),
        compression=_choice("dumps.compression", d.get("compression", dflt.compression), COMPRESSIONS),
        object_lock=_parse_object_lock(d.get("objectLock"), retention),
        priority=_choice("dumps.priority", d.get("priority", dflt.priority), DUMP_PRIORITIES),
        verify=_choice("dumps.verify", d.get("verify", dflt.verify), DUMP_VERIFY_MODES),
    )
    if cfg.prefix == cfg.files_prefix:
        raise _err("dumps.filesPrefix", cfg.files_prefix, "must differ from dumps.prefix")
    for key, value in (("dumps.prefix", cfg.prefix), ("dumps.filesPrefix", cfg.files_prefix)):
        if value.split("/")[0] == RESTORES_PREFIX:
            raise _err(key, value, f"must not start with '{RESTORES_PREFIX}', which restore-files uses")
    return cfg


def _parse_files(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return DEFAULT_FILES
    if not isinstance(raw, list) or not raw:
        raise _err("files", raw, "must be a non-empty list of absolute paths")
    for i, p in enumerate(raw):
        if (not isinstance(p, str) or not p.startswith("/") or "/../" in p + "/"
                or any(c.isspace() for c in p) or p == "/"):
            raise _err(f"files[{i}]", p, "must be an absolute path without '..' or spaces, not '/'")
    return tuple(raw)


def _names(key: str, raw: Any, pattern: re.Pattern, allowed: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _err(key, raw, f"must be a list of {allowed}")
    for i, name in enumerate(raw):
        _match(f"{key}[{i}]", name, pattern, f"must be {allowed}")
    if len(set(raw)) != len(raw):
        raise _err(key, raw, "must not name the same one twice")
    return tuple(raw)


def _parse_guard_rails(raw: Any) -> GuardRailsConfig:
    g = _mapping("guardRails", raw, ("operatorGroups", "operatorRoles", "operatorUsers"))
    return GuardRailsConfig(
        operator_groups=_names("guardRails.operatorGroups", g.get("operatorGroups"), IAM_GROUP_RE,
                               "an IAM group name (1-128 of letters, digits, +=,.@_-)"),
        operator_roles=_names("guardRails.operatorRoles", g.get("operatorRoles"), IAM_ROLE_RE,
                              "an IAM role name (1-64 of letters, digits, +=,.@_-)"),
        operator_users=_names("guardRails.operatorUsers", g.get("operatorUsers"), IAM_ROLE_RE,
                              "an IAM user name (1-64 of letters, digits, +=,.@_-)"))


def _parse_ebs_encryption(raw: Any) -> EbsEncryptionConfig:
    e = _mapping("ebsEncryption", raw, ("defaultKmsKey",))
    key = e.get("defaultKmsKey", "aws-managed")
    if key not in EBS_KEY_CHOICES and not (isinstance(key, str) and KMS_KEY_ARN_RE.match(key)):
        raise _err("ebsEncryption.defaultKmsKey", key,
                   "must be aws-managed, stack, or a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)")
    return EbsEncryptionConfig(key)


def _parse_monitoring(raw: Any, dumps: DumpConfig) -> MonitoringConfig:
    m = _mapping("monitoring", raw, ("trail", "trailBucketName"))
    derived = f"{dumps.bucket_name}-trail"
    if "trailBucketName" not in m and len(derived) > 63:
        raise _err("monitoring.trailBucketName", None,
                   f"is required: the default {derived} is longer than S3's 63 characters")
    return MonitoringConfig(
        trail=_choice("monitoring.trail", m.get("trail", "create"), TRAIL_CHOICES),
        trail_bucket_name=_match("monitoring.trailBucketName", m.get("trailBucketName", derived), BUCKET_RE,
                                 "must be a valid S3 bucket name (3-63 lowercase letters, digits, '.', '-')"))


def _parse_binlog(raw: Any, dumps: DumpConfig) -> BinlogConfig:
    b = _mapping("binlog", raw, ("enabled", "prefix", "intervalSeconds", "retentionDays", "spoolMegabytes",
                                 "rpoBoundSeconds", "applyServerSettings", "user", "passwordParameter"))
    dflt = BinlogConfig()
    prefix = _match("binlog.prefix", b.get("prefix", dflt.prefix), PREFIX_RE,
                    "must be lowercase path segments of a-z, 0-9, '.', '_' or '-' without leading or trailing '/'")
    others = {dumps.prefix.split("/")[0], dumps.files_prefix.split("/")[0], RESTORES_PREFIX}
    if prefix.split("/")[0] in others:
        raise _err("binlog.prefix", prefix, f"must not start with {', '.join(sorted(others))} "
                                            "(the dumps, file archives and restores use them)")
    interval = _int("binlog.intervalSeconds", b.get("intervalSeconds", dflt.interval_seconds), 5, 300)
    return BinlogConfig(
        enabled=_bool("binlog.enabled", b.get("enabled", dflt.enabled)),
        prefix=prefix,
        interval_seconds=interval,
        retention_days=_int("binlog.retentionDays", b.get("retentionDays", dumps.retention_days + 7), 1, 36500),
        spool_megabytes=_int("binlog.spoolMegabytes", b.get("spoolMegabytes", dflt.spool_megabytes), 16, 102400),
        rpo_bound_seconds=_int("binlog.rpoBoundSeconds", b.get("rpoBoundSeconds", dflt.rpo_bound_seconds),
                               interval, 86400),
        apply_server_settings=_bool("binlog.applyServerSettings",
                                    b.get("applyServerSettings", dflt.apply_server_settings)),
        user=_match("binlog.user", b.get("user", dflt.user), re.compile(r"^[A-Za-z0-9_]{1,80}$"),
                    "must be a MariaDB user name of letters, digits or underscores"),
        password_parameter=_match(
            "binlog.passwordParameter", b.get("passwordParameter", dflt.password_parameter), SSM_PARAMETER_RE,
            "must be the name of an SSM SecureString parameter, e.g. /quickport/prod/mysql/binlog-password"),
    )


def parse_config(raw: Mapping[str, Any], region: Optional[str] = None, stack: str = "prod") -> StackConfig:
    """Parse the namespace's keys (without the 'quickport-backup:' prefix) into a StackConfig."""
    raw = _mapping("", raw, TOP_LEVEL_KEYS)
    for required in ("instanceId", "rootVolumeId", "elasticIpAllocationId"):
        if raw.get(required) is None:
            raise _err(required, None, "is required")
    region = region or DEFAULT_REGION
    if not isinstance(region, str) or not REGION_RE.fullmatch(region):   # `aws:region: 5` is an int
        raise ConfigError(f"aws:region = {capped(region)}: must be an AWS region name, e.g. ap-south-1")
    backup = _parse_backup(raw.get("backup"))
    if backup.copy_to_region == region:
        raise _err("backup.copyToRegion", region, "must be a different region from aws:region")
    ebs_encryption = _parse_ebs_encryption(raw.get("ebsEncryption"))
    dumps = _parse_dumps(raw.get("dumps"))
    if backup.air_gapped_vault and not ebs_encryption.customer_managed:
        # AWS Backup copies EC2 recovery points into a logically air-gapped vault only when their
        # snapshots are encrypted with a customer managed key (not aws/ebs, not unencrypted).
        raise _err("ebsEncryption.defaultKmsKey", ebs_encryption.default_kms_key,
                   "must be stack or a customer managed key ARN when backup.airGappedVault is set: AWS "
                   "Backup copies EC2 recovery points to an air-gapped vault only from volumes encrypted "
                   "with a customer managed key")
    return StackConfig(
        region=region,
        instance_id=_match("instanceId", raw["instanceId"], _ID_RE["instance"],
                           "must be an EC2 instance id, i- followed by 8 or 17 hex digits"),
        root_volume_id=_match("rootVolumeId", raw["rootVolumeId"], _ID_RE["volume"],
                              "must be an EBS volume id, vol- followed by 8 or 17 hex digits"),
        elastic_ip_allocation_id=_match(
            "elasticIpAllocationId", raw["elasticIpAllocationId"], _ID_RE["eipalloc"],
            "must be an Elastic IP allocation id, eipalloc- followed by 8 or 17 hex digits"),
        instance_role_name=_match("instanceRoleName", raw.get("instanceRoleName", "quickport-prod-ec2"),
                                  IAM_ROLE_RE, "must be an IAM role name (1-64 of letters, digits, +=,.@_-)"),
        backup=backup,
        recycle_bin=_parse_recycle_bin(raw.get("recycleBin")),
        baselines=_parse_baselines(raw.get("baselines")),
        dumps=dumps,
        files=_parse_files(raw.get("files")),
        stack=stack,
        guard_rails=_parse_guard_rails(raw.get("guardRails")),
        ebs_encryption=ebs_encryption,
        monitoring=_parse_monitoring(raw.get("monitoring"), dumps),
        binlog=_parse_binlog(raw.get("binlog"), dumps),
        snapshot_retain_days=_parse_snapshot_retain_days(raw.get("snapshots")),
    )


# --- reading Pulumi.<stack>.yaml -----------------------------------------------------------------

_pinned_project: Optional[Path] = None


def pin_project_dir(path: Path) -> None:
    """Use this project for the stack file, the program and the policy pack whatever the current
    directory: scripts/backupctl pins its own checkout, as it always has."""
    global _pinned_project
    _pinned_project = Path(path).resolve()


def project_dir(start: Optional[Path] = None) -> Path:
    """The pinned project (scripts/backupctl); else the nearest directory at or above `start`
    (default: the current one) with a Pulumi.yaml, as the Pulumi CLI finds it; else this source tree
    when it is one; else `start` itself (an installed backupctl outside any project)."""
    if _pinned_project is not None:
        return _pinned_project
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / "Pulumi.yaml").is_file():
            return directory
    return REPO_ROOT if (REPO_ROOT / "Pulumi.yaml").is_file() else here


def stack_file(stack: str = "prod", root: Optional[Path] = None) -> Path:
    """Pulumi.<stack>.yaml: in `root` if given, else in the pinned project; else the current
    directory's, else the project's. A missing file comes back as the current directory's path,
    which the error then names."""
    name = f"Pulumi.{stack}.yaml"
    if root is not None:
        return root / name
    if _pinned_project is not None:
        return _pinned_project / name
    here = Path.cwd() / name
    if here.is_file():
        return here
    project = project_dir() / name
    return project if project.is_file() else here


MAX_STACK_FILE_BYTES = 1024 * 1024   # a real Pulumi.<stack>.yaml is a few KB


def _refuse_aliases(path: Path, text: str) -> None:
    """A stack file is plain data: anchors and aliases (`&a`, `*a`) are refused, because nested
    aliases expand exponentially (a 1.7 KB "billion laughs" file becomes gigabytes of values).
    libyaml's event stream is read without building anything, so this costs little."""
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.AliasEvent):
            line = event.start_mark.line + 1 if event.start_mark else "?"
            anchor = capped(event.anchor, 40)[1:-1]
            raise ConfigError(f"stack config file {path} line {line}: YAML aliases (*{anchor}) are not "
                              f"allowed in a stack config file; write the value out")


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml when installed: 1 MB in well under 1 s


def read_stack_file(path: Path) -> dict[str, Any]:
    """The file's `config:` map, keys as written (e.g. 'aws:region', 'quickport-backup:backup').
    Bounded: at most MAX_STACK_FILE_BYTES, no aliases, so any file parses or fails in well under 1 s."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_STACK_FILE_BYTES + 1)
        if len(data) > MAX_STACK_FILE_BYTES:
            raise ConfigError(f"stack config file {path} is larger than {MAX_STACK_FILE_BYTES // 1024} KiB; "
                              f"a stack config is a few KB")
        text = data.decode("utf-8")
        if "&" in text:   # no anchor, no alias that resolves: skip the event scan
            _refuse_aliases(path, text)
        doc = yaml.load(text, Loader=_LOADER) or {}   # noqa: S506 - a safe loader (libyaml's or PyYAML's)
    except FileNotFoundError:
        raise ConfigError(f"stack config file {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"stack config file {path} is not valid YAML: {capped(str(e).splitlines()[0])[1:-1]}") \
            from None
    except RecursionError:
        raise ConfigError(f"stack config file {path} is nested too deeply to be a stack config") from None
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise ConfigError(f"stack config file {path} has no 'config:' mapping")
    odd = [k for k in config if not isinstance(k, str)]
    if odd:
        raise ConfigError(f"stack config file {path}: config key {capped(odd[0])} must be a string, "
                          f"e.g. {NAMESPACE}:instanceId")
    return config


def split_namespaces(config: Mapping[str, Any]) -> tuple[dict[str, Any], Optional[str]]:
    """Our namespace's keys (prefix removed) and aws:region; keys of other namespaces are left alone."""
    ours: dict[str, Any] = {}
    for key, value in config.items():
        if key.startswith(NAMESPACE + ":"):
            ours[key[len(NAMESPACE) + 1:]] = value
        elif ":" not in key:
            raise ConfigError(f"{capped(key)} = {capped(value)}: config keys need a namespace, e.g. {NAMESPACE}:{key}")
    return ours, config.get("aws:region")


def load_stack_config(stack: str = "prod", path: Optional[Path] = None) -> StackConfig:
    """Parse and validate Pulumi.<stack>.yaml (or the given file) outside the Pulumi engine."""
    raw = read_stack_file(path or stack_file(stack))
    ours, region = split_namespaces(raw)
    return parse_config(ours, region=region, stack=stack)
