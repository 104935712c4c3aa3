"""The strategy's rules, one function each: retention minimums, deletion never, no exceptions.

Each function has the CrossGuard callback signature, `(args, report_violation)`: resource rules get
`ResourceValidationArgs` (inputs of one resource), stack rules get `StackValidationArgs` (outputs of
every resource, with parents and property dependencies). Thresholds come from `args.get_config()`;
`DEFAULTS` holds the strategy's values, which are also the config schema's defaults (policy_pack.py).
A message says what is wrong, the actual value and the required one.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Optional

from .shapes import (
    AIR_GAPPED_VAULT,
    BACKUP_PLAN,
    BACKUP_SELECTION,
    BACKUP_VAULT,
    BACKUP_VAULT_LOCK,
    BACKUP_VAULT_POLICY,
    EBS_SNAPSHOT,
    IAM_ATTACHMENTS,
    IAM_POLICY,
    KMS_KEY,
    RBIN_RULE,
    S3_BUCKET,
    S3_ENCRYPTION,
    S3_LIFECYCLE,
    S3_OBJECT_LOCK,
    S3_POLICY,
    S3_PUBLIC_ACCESS_BLOCK,
    S3_VERSIONING,
    SSM_DOCUMENT,
    SSM_PARAMETER,
    arn_matches,
    as_int,
    baseline_name_problem,
    bucket_names,
    companions,
    denied_actions,
    denies_insecure_transport,
    is_rule_lock,
    is_snapshot_lock,
    items,
    iter_strings,
    locked_rule_key,
    locked_snapshot_key,
    of_type,
    policy_statements,
    prop,
    refers_to,
    runs_at_least_daily,
    vault_names,
)

Report = Callable[..., None]
STACK_NAMESPACE = "quickport-backup"  # the project whose stack config names the instance

VAULT_DENIED_ACTIONS = ["backup:DeleteRecoveryPoint", "backup:UpdateRecoveryPointLifecycle",
                        "backup:PutBackupVaultAccessPolicy"]
KMS_SSE_ALGORITHMS = ["aws:kms", "aws:kms:dsse"]

# The strategy's thresholds; every one can be changed with --policy-pack-config.
DEFAULTS: dict[str, dict[str, Any]] = {
    "backup-retention-minimum": {"minRetentionDays": 7},
    "backup-vault-locked": {"minRetentionDays": 7},
    "backup-vault-deny-delete": {"deniedActions": VAULT_DENIED_ACTIONS},
    "root-volume-in-backup-plan": {"instanceId": "", "rootVolumeId": ""},
    "recycle-bin-retention-minimum": {"minRetentionDays": 7, "requireLock": True, "minUnlockDelayDays": 7},
    "baseline-snapshot-naming": {"prefix": "prod-root", "actionMaxLength": 48},
    "dump-bucket-hardened": {"sseAlgorithms": KMS_SSE_ALGORITHMS},
    "dump-retention-minimum": {"minRetentionDays": 7, "minNoncurrentDays": 7},
    "dump-bucket-object-lock": {"minRetentionDays": 7, "modes": ["GOVERNANCE", "COMPLIANCE"]},
    "operator-guard-rails-attached": {"policyName": "quickport-backup-operator-guard-rails"},
    # "": the stack's quickport-backup:dumps.prefix / binlog.prefix, else the shipped "mysql" / "binlog".
    "binlog-retention-covers-dumps": {"dumpPrefix": "", "binlogPrefix": ""},
}
SHIPPED_PREFIXES = {"dumps": "mysql", "binlog": "binlog"}


def setting(args: Any, policy: str, key: str) -> Any:
    """The configured value of a knob, else the strategy's default (the CLI normally sends both)."""
    config = args.get_config() or {}
    value = config.get(key)
    return DEFAULTS[policy][key] if value is None else value


def days(value: Any) -> str:
    """7.0 (numbers arrive as floats over gRPC) prints as 7."""
    whole = as_int(value)
    return str(whole) if whole is not None else repr(value)


# --- AWS Backup ------------------------------------------------------------------------------------

def backup_retention_minimum(args: Any, report: Report) -> None:
    if args.resource_type != BACKUP_PLAN:
        return
    minimum = setting(args, "backup-retention-minimum", "minRetentionDays")
    for index, rule in enumerate(items(args.props, "rules")):
        name = prop(rule, "ruleName", f"#{index}")
        delete_after = prop(rule, "lifecycle.deleteAfter")
        if delete_after is not None and delete_after < minimum:
            report(f"backup rule '{name}' keeps recovery points {days(delete_after)} days; "
                   f"the strategy requires at least {days(minimum)}")
        for copy in items(rule, "copyActions"):
            copy_after = prop(copy, "lifecycle.deleteAfter")
            if copy_after is not None and copy_after < minimum:
                report(f"backup rule '{name}' keeps its copy in {prop(copy, 'destinationVaultArn', '?')} "
                       f"{days(copy_after)} days; the strategy requires at least {days(minimum)}")


def backup_schedule_at_least_daily(args: Any, report: Report) -> None:
    if args.resource_type != BACKUP_PLAN:
        return
    for index, rule in enumerate(items(args.props, "rules")):
        name = prop(rule, "ruleName", f"#{index}")
        schedule = prop(rule, "schedule")
        if not runs_at_least_daily(schedule):
            report(f"backup rule '{name}' runs on schedule {schedule!r}; the strategy requires at least "
                   f"one run every day, e.g. cron(0 20 * * ? *)")


def backup_vault_locked(args: Any, report: Report) -> None:
    """Every vault is locked; a logically air-gapped vault is locked by AWS (its own min retention
    counts); every copy action lands in a locked vault of this stack."""
    minimum = setting(args, "backup-vault-locked", "minRetentionDays")
    locked_arns: set[str] = set()
    for vault in of_type(args.resources, BACKUP_VAULT):
        locks = companions(args.resources, BACKUP_VAULT_LOCK, "backupVaultName", vault, vault_names(vault))
        if not locks:
            report(f"backup vault '{prop(vault.props, 'name', vault.name)}' has no vault lock "
                   f"configuration; the strategy requires one with min retention >= {days(minimum)} days",
                   vault.urn)
            continue
        good = True
        for lock in locks:
            min_retention = prop(lock.props, "minRetentionDays")
            if min_retention is None or min_retention < minimum:
                good = False
                report(f"backup vault '{prop(vault.props, 'name', vault.name)}' is locked with min retention "
                       f"{days(min_retention) if min_retention is not None else 'unset'} days; "
                       f"the strategy requires at least {days(minimum)}", lock.urn)
        if good and prop(vault.props, "arn"):
            locked_arns.add(prop(vault.props, "arn"))
    for vault in of_type(args.resources, AIR_GAPPED_VAULT):
        min_retention = prop(vault.props, "minRetentionDays")
        if min_retention is None or min_retention < minimum:
            report(f"logically air-gapped vault '{prop(vault.props, 'name', vault.name)}' keeps recovery points "
                   f"at least {days(min_retention) if min_retention is not None else 'unset'} days; the strategy "
                   f"requires at least {days(minimum)}", vault.urn)
        elif prop(vault.props, "arn"):
            locked_arns.add(prop(vault.props, "arn"))
    for plan in of_type(args.resources, BACKUP_PLAN):
        for index, rule in enumerate(items(plan.props, "rules")):
            for copy in items(rule, "copyActions"):
                destination = prop(copy, "destinationVaultArn")
                if destination not in locked_arns:
                    report(f"backup rule '{prop(rule, 'ruleName', f'#{index}')}' copies to {destination}, which is "
                           f"not a locked vault of this stack; the strategy requires every copy to land in a "
                           f"locked (or logically air-gapped) vault", plan.urn)


def backup_vault_deny_delete(args: Any, report: Report) -> None:
    wanted = list(setting(args, "backup-vault-deny-delete", "deniedActions"))
    for vault in of_type(args.resources, BACKUP_VAULT):
        policies = companions(args.resources, BACKUP_VAULT_POLICY, "backupVaultName", vault, vault_names(vault))
        covered: set[str] = set()
        for policy in policies:
            for statement in policy_statements(prop(policy.props, "policy")):
                covered |= denied_actions(statement, wanted)
        missing = [a for a in wanted if a not in covered]
        if missing:
            name = prop(vault.props, "name", vault.name)
            found = ("has no access policy" if not policies else
                     f"has an access policy that does not deny {', '.join(missing)} to everyone unconditionally")
            report(f"backup vault '{name}' {found}; the strategy requires a Deny of {', '.join(wanted)} "
                   f"to Principal '*' with no conditions", vault.urn)


def _stack_config(key: str) -> Optional[str]:
    """A value of the stack being previewed. The CLI hands the stack config to a Python pack in
    PULUMI_CONFIG (the SDK loads it before each analysis); pulumi_policy does not expose the config
    sent with ConfigureStack."""
    try:
        import pulumi
        return pulumi.Config(STACK_NAMESPACE).get(key)
    except Exception:  # no stack context (e.g. `pulumi policy publish`)
        return None


def _stack_prefix(section: str) -> str:
    """quickport-backup:<section>.prefix of the stack being previewed, else the shipped default."""
    try:
        import pulumi
        value = pulumi.Config(STACK_NAMESPACE).get_object(section) or {}
    except Exception:  # no stack context, or a value that is not an object
        value = {}
    prefix = value.get("prefix") if isinstance(value, Mapping) else None
    return prefix if isinstance(prefix, str) and prefix else SHIPPED_PREFIXES[section]


def root_volume_in_backup_plan(args: Any, report: Report) -> None:
    instance_id = setting(args, "root-volume-in-backup-plan", "instanceId") or _stack_config("instanceId")
    volume_id = setting(args, "root-volume-in-backup-plan", "rootVolumeId") or _stack_config("rootVolumeId")
    if not instance_id and not volume_id:
        report("the production instance is unknown: set instanceId or rootVolumeId in this policy's config, "
               f"or {STACK_NAMESPACE}:instanceId in the stack config")
        return
    wanted = [suffix for suffix in (f":instance/{instance_id}" if instance_id else None,
                                    f":volume/{volume_id}" if volume_id else None) if suffix]
    selections = of_type(args.resources, BACKUP_SELECTION)
    for selection in selections:
        # NotResources wins over Resources: an ARN listed and also excluded is never backed up.
        excluded = [p for p in items(selection.props, "notResources") if isinstance(p, str)]
        for arn in items(selection.props, "resources"):
            if (isinstance(arn, str) and any(arn.endswith(suffix) for suffix in wanted)
                    and not any(arn_matches(arn, pattern) for pattern in excluded)):
                return
    names = " or ".join(x for x in (instance_id and f"instance {instance_id}",
                                     volume_id and f"root volume {volume_id}") if x)
    found = "no backup selection" if not selections else \
        f"{len(selections)} backup selection(s), none listing it by ARN without excluding it in notResources"
    report(f"{names} is not in any backup plan: the stack has {found}; the strategy requires a selection "
           f"whose resources include its ARN")


# --- Recycle Bin -----------------------------------------------------------------------------------

_DAY_UNITS = {"DAYS": 1}


def recycle_bin_retention_minimum(args: Any, report: Report) -> None:
    """One stack policy: it must see every rule to know one exists, and reports each bad rule by URN."""
    policy = "recycle-bin-retention-minimum"
    minimum = setting(args, policy, "minRetentionDays")
    require_lock = setting(args, policy, "requireLock")
    min_unlock = setting(args, policy, "minUnlockDelayDays")
    rules = [r for r in of_type(args.resources, RBIN_RULE) if prop(r.props, "resourceType") == "EBS_SNAPSHOT"]
    rule_locks = [r for r in args.resources if is_rule_lock(r.resource_type, r.props)]
    if not rules:
        report(f"no Recycle Bin rule for EBS_SNAPSHOT; the strategy requires one keeping deleted snapshots "
               f"at least {days(minimum)} days")
        return
    for rule in rules:
        unit = prop(rule.props, "retentionPeriod.retentionPeriodUnit")
        value = prop(rule.props, "retentionPeriod.retentionPeriodValue")
        if unit not in _DAY_UNITS or value is None or value < minimum:
            report(f"Recycle Bin rule '{rule.name}' keeps deleted snapshots {days(value)} {str(unit).lower()}; "
                   f"the strategy requires at least {days(minimum)} days", rule.urn)
        if require_lock:
            delay = prop(rule.props, "lockConfiguration.unlockDelay.unlockDelayValue")
            delay_unit = prop(rule.props, "lockConfiguration.unlockDelay.unlockDelayUnit")
            if delay is None:
                report(f"Recycle Bin rule '{rule.name}' is not locked; the strategy requires a lock with an "
                       f"unlock delay of at least {days(min_unlock)} days", rule.urn)
            elif delay_unit not in _DAY_UNITS or delay < min_unlock:
                report(f"Recycle Bin rule '{rule.name}' unlocks after {days(delay)} {str(delay_unit).lower()}; "
                       f"the strategy requires at least {days(min_unlock)} days", rule.urn)
            ids = {prop(rule.props, "id"), prop(rule.props, "identifier")} - {None}
            if not any(refers_to(lock, locked_rule_key(lock.props), rule, ids) for lock in rule_locks):
                report(f"Recycle Bin rule '{rule.name}' has no rule-lock resource; the provider may never send "
                       f"its lockConfiguration (terraform-provider-aws#32534), so the strategy requires a "
                       f"resource that calls rbin:LockRule (components/rbin_lock.py)", rule.urn)


# --- protection, snapshots -------------------------------------------------------------------------

_PROTECTED_TYPES = {
    BACKUP_VAULT: "backup vault", BACKUP_VAULT_LOCK: "vault lock configuration", KMS_KEY: "KMS key",
    RBIN_RULE: "Recycle Bin rule", EBS_SNAPSHOT: "baseline snapshot", S3_BUCKET: "S3 bucket",
    AIR_GAPPED_VAULT: "logically air-gapped vault", S3_OBJECT_LOCK: "S3 Object Lock configuration",
}


def critical_resources_protected(args: Any, report: Report) -> None:
    kind = _PROTECTED_TYPES.get(args.resource_type)
    if kind is None and is_snapshot_lock(args.resource_type, args.props):
        kind = "snapshot lock"
    if kind is None and is_rule_lock(args.resource_type, args.props):
        kind = "Recycle Bin rule lock"
    if kind and not args.opts.protect:
        report(f"{kind} '{args.name}' has protect: false; the strategy requires protect: true "
               f"(pulumi.ResourceOptions(protect=True)) so no destroy or replace can delete it")


def baseline_snapshot_naming(args: Any, report: Report) -> None:
    if args.resource_type != EBS_SNAPSHOT:
        return
    prefix = setting(args, "baseline-snapshot-naming", "prefix")
    max_length = as_int(setting(args, "baseline-snapshot-naming", "actionMaxLength")) or 48
    problem = baseline_name_problem(prop(args.props, "tags.Name"), prefix, max_length)
    if problem:
        report(f"baseline snapshot '{args.name}' {problem}")


def baseline_snapshot_locked(args: Any, report: Report) -> None:
    locks = [r for r in args.resources if is_snapshot_lock(r.resource_type, r.props)]
    for snapshot in of_type(args.resources, EBS_SNAPSHOT):
        ids = {prop(snapshot.props, "id"), prop(snapshot.props, "snapshotId")} - {None}
        if not any(refers_to(lock, locked_snapshot_key(lock.props), snapshot, ids) for lock in locks):
            report(f"baseline snapshot '{prop(snapshot.props, 'tags.Name', snapshot.name)}' has no snapshot "
                   f"lock; the strategy requires an EC2 snapshot lock resource for every baseline",
                   snapshot.urn)


# --- S3 dump bucket --------------------------------------------------------------------------------

def dump_bucket_hardened(args: Any, report: Report) -> None:
    algorithms = list(setting(args, "dump-bucket-hardened", "sseAlgorithms"))
    for bucket in of_type(args.resources, S3_BUCKET):
        label = f"bucket '{prop(bucket.props, 'bucket', bucket.name)}'"
        names = bucket_names(bucket)

        def linked(resource_type: str, bucket: Any = bucket, names: set[str] = names) -> list[Any]:
            return companions(args.resources, resource_type, "bucket", bucket, names)

        statuses = [prop(v.props, "versioningConfiguration.status") for v in linked(S3_VERSIONING)]
        if "Enabled" not in statuses:
            report(f"{label} has versioning {statuses[0] if statuses else 'not configured'}; "
                   f"the strategy requires Enabled", bucket.urn)

        sse = [prop(rule, "applyServerSideEncryptionByDefault.sseAlgorithm")
               for config in linked(S3_ENCRYPTION) for rule in items(config.props, "rules")]
        if not any(a in algorithms for a in sse):
            report(f"{label} encrypts with {', '.join(map(str, sse)) if sse else 'the S3 default (SSE-S3)'}; "
                   f"the strategy requires SSE-KMS ({', '.join(algorithms)})", bucket.urn)

        blocks = linked(S3_PUBLIC_ACCESS_BLOCK)
        flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        off = sorted({f for f in flags for b in blocks if prop(b.props, f) is not True}) if blocks else list(flags)
        if off:
            report(f"{label} leaves {', '.join(off)} off; the strategy requires all four public access "
                   f"blocks on", bucket.urn)

        if prop(bucket.props, "forceDestroy") is True:
            report(f"{label} has forceDestroy: true; the strategy requires false", bucket.urn)

        statements = [s for p in linked(S3_POLICY) for s in policy_statements(prop(p.props, "policy"))]
        if not any(denies_insecure_transport(s) for s in statements):
            report(f"{label} has no policy statement denying requests with aws:SecureTransport false; "
                   f"the strategy requires TLS-only access", bucket.urn)
        if not any(denied_actions(s, ["s3:DeleteObjectVersion"]) for s in statements):
            report(f"{label} has no policy statement denying s3:DeleteObjectVersion to everyone; "
                   f"the strategy requires old dump versions to be undeletable", bucket.urn)


_DAYS_PER_YEAR = 365


def dump_bucket_object_lock(args: Any, report: Report) -> None:
    """Every bucket has S3 Object Lock with a default retention: no version can be deleted early,
    whatever bucket policy an administrator writes."""
    minimum = setting(args, "dump-bucket-object-lock", "minRetentionDays")
    modes = [str(m).upper() for m in setting(args, "dump-bucket-object-lock", "modes")]
    for bucket in of_type(args.resources, S3_BUCKET):
        label = f"bucket '{prop(bucket.props, 'bucket', bucket.name)}'"
        if prop(bucket.props, "objectLockEnabled") is False:
            report(f"{label} has objectLockEnabled: false; the strategy requires S3 Object Lock", bucket.urn)
        locks = companions(args.resources, S3_OBJECT_LOCK, "bucket", bucket, bucket_names(bucket))
        if not locks:
            report(f"{label} has no Object Lock configuration; the strategy requires default retention "
                   f"({' or '.join(modes)}) of at least {days(minimum)} days on every version", bucket.urn)
            continue
        for lock in locks:
            enabled = prop(lock.props, "objectLockEnabled", "Enabled")
            mode = prop(lock.props, "rule.defaultRetention.mode")
            lock_days = prop(lock.props, "rule.defaultRetention.days")
            years = prop(lock.props, "rule.defaultRetention.years")
            kept = lock_days if lock_days is not None else (years * _DAYS_PER_YEAR if years is not None else None)
            if enabled != "Enabled":
                report(f"{label} has objectLockEnabled {enabled!r}; the strategy requires 'Enabled'", lock.urn)
            if mode is None or kept is None:
                report(f"{label} has Object Lock without a default retention; the strategy requires "
                       f"{' or '.join(modes)} for at least {days(minimum)} days", lock.urn)
                continue
            if str(mode).upper() not in modes:
                report(f"{label} locks versions in mode {mode}; the strategy allows {', '.join(modes)}", lock.urn)
            if kept < minimum:
                report(f"{label} locks versions for {days(kept)} days; the strategy requires at least "
                       f"{days(minimum)}", lock.urn)


def dump_retention_minimum(args: Any, report: Report) -> None:
    if args.resource_type != S3_LIFECYCLE:
        return
    minimum = setting(args, "dump-retention-minimum", "minRetentionDays")
    noncurrent_minimum = setting(args, "dump-retention-minimum", "minNoncurrentDays")
    for index, rule in enumerate(items(args.props, "rules")):
        if prop(rule, "status") != "Enabled":
            continue
        name = prop(rule, "id", f"#{index}")
        expire_days = prop(rule, "expiration.days")
        if expire_days is not None and expire_days < minimum:
            report(f"lifecycle rule '{name}' deletes dumps after {days(expire_days)} days; "
                   f"the strategy requires at least {days(minimum)}")
        if prop(rule, "expiration.date") is not None:
            report(f"lifecycle rule '{name}' deletes dumps on a fixed date {prop(rule, 'expiration.date')}; "
                   f"the strategy requires expiration in days, at least {days(minimum)}")
        noncurrent = prop(rule, "noncurrentVersionExpiration.noncurrentDays")
        if noncurrent is not None and noncurrent < noncurrent_minimum:
            report(f"lifecycle rule '{name}' deletes old dump versions after {days(noncurrent)} days; "
                   f"the strategy requires at least {days(noncurrent_minimum)}")


def _lifecycle_prefix(rule: Any) -> str:
    """The key prefix a lifecycle rule applies to ('' for the whole bucket). Tag and size filters only
    narrow it further, so they are ignored: such a rule may still expire any object under the prefix."""
    for path in ("filter.prefix", "filter.and.prefix", "prefix"):
        value = prop(rule, path)
        if isinstance(value, str):
            return value
    return ""


def _current_days(rule: Any) -> float:
    """How long a lifecycle rule keeps current objects (infinity: it does not expire them)."""
    expire = prop(rule, "expiration.days")
    return float("inf") if expire is None else float(expire)


def _reaches(rule_prefix: str, prefix: str) -> bool:
    """Can a rule for `rule_prefix` expire some object under `prefix`? (one is a prefix of the other)"""
    return prefix.startswith(rule_prefix) or rule_prefix.startswith(prefix)


def binlog_retention_covers_dumps(args: Any, report: Report) -> None:
    """Point-in-time recovery replays the binlogs from a dump's coordinates: as long as a dump is kept,
    the segments after it must be. In each bucket whose lifecycle expires the dump prefix, no enabled
    rule that reaches the binlog prefix (its own, a bucket-wide one, a narrower one) may expire
    current objects sooner than the longest dump rule keeps dumps."""
    policy = "binlog-retention-covers-dumps"
    dump_prefix = (setting(args, policy, "dumpPrefix") or _stack_prefix("dumps")).rstrip("/") + "/"
    binlog_prefix = (setting(args, policy, "binlogPrefix") or _stack_prefix("binlog")).rstrip("/") + "/"
    for lifecycle in of_type(args.resources, S3_LIFECYCLE):
        rules = [r for r in items(lifecycle.props, "rules") if prop(r, "status") == "Enabled"]
        dump_rules = [r for r in rules if _lifecycle_prefix(r) in (dump_prefix, dump_prefix.rstrip("/"))]
        if not dump_rules:
            continue  # not a dump bucket (the trail's bucket, say)
        longest_rule = max(dump_rules, key=_current_days)   # the longest any dump is kept
        longest = prop(longest_rule, "expiration.days")
        dumps = (f"rule '{prop(longest_rule, 'id', '?')}' keeps {dump_prefix} "
                 + (f"{days(longest)} days" if longest is not None else "for ever"))
        for index, rule in enumerate(r for r in rules if _reaches(_lifecycle_prefix(r), binlog_prefix)):
            name = prop(rule, "id", f"#{index}")
            if prop(rule, "expiration.date") is not None:
                report(f"lifecycle rule '{name}' expires binlog segments under {binlog_prefix} on a fixed date "
                       f"{prop(rule, 'expiration.date')}; {dumps}, and the strategy requires segments kept at least "
                       f"as long as the dumps they extend", lifecycle.urn)
            expire = prop(rule, "expiration.days")
            if expire is not None and _current_days(rule) < _current_days(longest_rule):
                report(f"lifecycle rule '{name}' expires binlog segments under {binlog_prefix} after {days(expire)} "
                       f"days; {dumps}, and the strategy requires segments kept at least as long"
                       + (f" ({days(longest)} days)" if longest is not None else " (never expired)"),
                       lifecycle.urn)


# --- deletion never, keys, secrets -----------------------------------------------------------------

def no_force_destroy(args: Any, report: Report) -> None:
    if args.resource_type in (S3_BUCKET, BACKUP_VAULT) and prop(args.props, "forceDestroy") is True:
        kind = "S3 bucket" if args.resource_type == S3_BUCKET else "backup vault"
        report(f"{kind} '{args.name}' has forceDestroy: true (a destroy would empty it first); "
               f"the strategy requires false")


def kms_key_rotation(args: Any, report: Report) -> None:
    if args.resource_type == KMS_KEY and prop(args.props, "enableKeyRotation") is not True:
        report(f"KMS key '{args.name}' has enableKeyRotation {prop(args.props, 'enableKeyRotation', False)}; "
               f"the strategy requires true")


_DB_CLIENT = re.compile(r"\b(?:mysqldump|mysql|mariadb-dump|mariadb|mysqladmin|mariadb-admin)\b")
# On a database client's command line any attached password is visible in `ps`, literal or not.
_ARGV_PASSWORD = re.compile(r"(?:^|\s)(-p(?=[^\s-])|--password=(?=\S)|MYSQL_PWD=(?=\S))")
# A whole line that assigns a password: option file (password=x), env (export MYSQL_PWD=x), YAML.
_LINE_ASSIGNMENT = re.compile(
    r"(?i)^\s*(?:export\s+)?[\"']?(password|passwd|pwd|mysql_pwd|db_password)[\"']?\s*[=:]\s*[\"']?([^\s\"',]+)[\"']?,?\s*$")
_PASSWORD_KEY = re.compile(r"(?i)^(?:db_?|mysql_?|database_?)?(?:password|passwd|pwd)$")
# Where the secret lives is not the secret: shell, SSM and format placeholders.
_PLACEHOLDER = re.compile(r"^(?:\$|%|\{|<|\*+$)")


def _secret_problems(text: str) -> list[str]:
    """Why `text` (a document body or a parameter value) holds a password in the clear, if it does.

    A JSON document is judged string by string (each runCommand entry is a shell line), plus its
    password-named keys; anything else (YAML, a plain value) line by line.
    """
    document = _structured(text)
    lines = [line for _, s in iter_strings(document) for line in s.splitlines()] \
        if document is not None else text.splitlines()
    problems = []
    for line in lines:
        if _DB_CLIENT.search(line):
            for match in _ARGV_PASSWORD.finditer(line):
                problems.append(f"a password on a database client's command line ({match.group(1).strip()}...; "
                                f"anyone running ps sees it)")
        assignment = _LINE_ASSIGNMENT.match(line)
        if assignment and not _PLACEHOLDER.match(assignment.group(2)):
            problems.append(f"a literal {assignment.group(1)} assignment")
    problems += [f"a literal value for '{key}'" for key in _password_keys(document)]
    return problems


def _structured(text: str) -> Any:
    """A document body parsed as JSON (SSM documents are JSON or YAML; YAML is checked line by line)."""
    import json
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return document if isinstance(document, (dict, list)) else None


def _password_keys(value: Any, key: str = "") -> list[str]:
    """Keys named like a password whose value (or parameter default) is a literal string."""
    found = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            literal = v.get("default") if isinstance(v, Mapping) else v
            if _PASSWORD_KEY.match(str(k)) and isinstance(literal, str) and literal \
                    and not _PLACEHOLDER.match(literal):
                found.append(str(k))
            else:
                found += _password_keys(v, str(k))
    elif isinstance(value, list):
        for v in value:
            found += _password_keys(v, key)
    return found


def no_inline_secrets(args: Any, report: Report) -> None:
    if args.resource_type not in (SSM_DOCUMENT, SSM_PARAMETER):
        return
    kind = "SSM document" if args.resource_type == SSM_DOCUMENT else "SSM parameter"
    keys = ("content",) if args.resource_type == SSM_DOCUMENT else ("value", "insecureValue")
    seen = set()
    for key in keys:
        for path, text in iter_strings(prop(args.props, key), key):
            for problem in _secret_problems(text):
                if (path, problem) not in seen:
                    seen.add((path, problem))
                    report(f"{kind} '{args.name}' {path} contains {problem}; the strategy requires the "
                           f"password to stay in the SecureString parameter, read into an option file")
    if args.resource_type == SSM_PARAMETER:
        name = str(prop(args.props, "name", args.name))
        if re.search(r"(?i)passw(or)?d|secret", name) and prop(args.props, "type") != "SecureString":
            report(f"SSM parameter '{name}' has type {prop(args.props, 'type')}; "
                   f"a password must be a SecureString")



# --- people ----------------------------------------------------------------------------------------

def operator_guard_rails_attached(args: Any, report: Report) -> None:
    """The deny-only operator policy exists and is attached to at least one group, role or user: a
    policy attached to nobody protects nothing."""
    name = setting(args, "operator-guard-rails-attached", "policyName")
    policies = [p for p in of_type(args.resources, IAM_POLICY) if prop(p.props, "name", p.name) == name]
    if not policies:
        report(f"the stack declares no IAM policy named '{name}'; the strategy requires the operator guard "
               f"rails (components/guard_rails.py) attached to the operators")
        return
    attachments = [r for r in args.resources if r.resource_type in IAM_ATTACHMENTS]
    for policy in policies:
        arns = {prop(policy.props, "arn"), prop(policy.props, "id")} - {None}
        if not any(refers_to(a, "policyArn", policy, arns) for a in attachments):
            report(f"IAM policy '{name}' is attached to nobody; the strategy requires it on the operators' "
                   f"groups, roles or users (quickport-backup:guardRails)", policy.urn)
