"""The resource shapes the rules judge: type tokens, camelCase property access, links between resources.

The pack runs in its own environment under the Pulumi CLI, so nothing here imports the project's
components; the only contract is the engine's view of a resource (type token, camelCase properties,
options, property dependencies).
"""
from __future__ import annotations

import calendar
import fnmatch
import json
import re
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

# pulumi-aws 7.x type tokens.
KMS_KEY = "aws:kms/key:Key"
BACKUP_VAULT = "aws:backup/vault:Vault"
# Compliance-locked by AWS itself (no VaultLockConfiguration exists for it).
AIR_GAPPED_VAULT = "aws:backup/logicallyAirGappedVault:LogicallyAirGappedVault"
BACKUP_VAULT_LOCK = "aws:backup/vaultLockConfiguration:VaultLockConfiguration"
BACKUP_VAULT_POLICY = "aws:backup/vaultPolicy:VaultPolicy"
BACKUP_PLAN = "aws:backup/plan:Plan"
BACKUP_SELECTION = "aws:backup/selection:Selection"
RBIN_RULE = "aws:rbin/rule:Rule"
EBS_SNAPSHOT = "aws:ebs/snapshot:Snapshot"
S3_BUCKET = "aws:s3/bucket:Bucket"
S3_VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
S3_ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
S3_PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
S3_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
S3_LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
S3_OBJECT_LOCK = "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration"
IAM_POLICY = "aws:iam/policy:Policy"
IAM_ATTACHMENTS = ("aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
                   "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                   "aws:iam/userPolicyAttachment:UserPolicyAttachment")
SSM_DOCUMENT = "aws:ssm/document:Document"
SSM_PARAMETER = "aws:ssm/parameter:Parameter"
# The EC2 snapshot lock has no pulumi-aws resource; the project declares it as a Python dynamic
# resource (type "pulumi-python:dynamic:Resource", or "pulumi-python:dynamic/<module>:<Name>" when
# the class names itself), recognisable only by its snapshot id input. Dynamic inputs keep the
# program's own key names, so both spellings are accepted.
DYNAMIC_RESOURCE_PREFIX = "pulumi-python:dynamic"
SNAPSHOT_LOCK_KEYS = ("snapshot_id", "snapshotId")
# The Recycle Bin rule lock (components/rbin_lock.py) likewise: by its rule id input.
RULE_LOCK_KEYS = ("rule_id", "ruleId")

_MISSING = object()


def prop(props: Mapping[str, Any], path: str, default: Any = None) -> Any:
    """Read a camelCase property path ("lifecycle.deleteAfter", "rules.0.schedule") from engine props.

    Every rule reads properties through here so the engine's names live in one place. A missing key
    or a None anywhere on the path gives `default`. Unknown preview values raise the SDK's
    UnknownValueError on access, which the SDK reports instead of passing the policy.
    """
    value: Any = props
    for part in path.split("."):
        if value is None:
            return default
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and part.isdigit():
            index = int(part)
            value = value[index] if index < len(value) else _MISSING
        else:
            return default
        if value is _MISSING:
            return default
    return default if value is None else value


def items(props: Mapping[str, Any], path: str) -> list[Any]:
    """A list-valued property as a list (missing or None gives [])."""
    value = prop(props, path, [])
    return list(value) if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else []


def as_int(value: Any) -> Optional[int]:
    """Numbers arrive as floats over gRPC (protobuf Struct); whole numbers come back as int."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)) and float(value).is_integer():
        return int(value)
    return None


def is_snapshot_lock(resource_type: str, props: Mapping[str, Any]) -> bool:
    return (resource_type.startswith(DYNAMIC_RESOURCE_PREFIX)
            and any(key in list(props) for key in SNAPSHOT_LOCK_KEYS))  # keys only: a value may be unknown


def is_rule_lock(resource_type: str, props: Mapping[str, Any]) -> bool:
    return resource_type.startswith(DYNAMIC_RESOURCE_PREFIX) and any(key in list(props) for key in RULE_LOCK_KEYS)


def locked_rule_key(props: Mapping[str, Any]) -> str:
    return next((key for key in RULE_LOCK_KEYS if key in list(props)), RULE_LOCK_KEYS[0])


def locked_snapshot_key(props: Mapping[str, Any]) -> str:
    """The input key a snapshot lock uses for the snapshot id."""
    return next((key for key in SNAPSHOT_LOCK_KEYS if key in list(props)), SNAPSHOT_LOCK_KEYS[0])


# --- links between resources of a stack ----------------------------------------------------------

def of_type(resources: Iterable[Any], resource_type: str) -> list[Any]:
    return [r for r in resources if r.resource_type == resource_type]


def refers_to(resource: Any, key: str, target: Any, target_values: Iterable[Any]) -> bool:
    """Does `resource.props[key]` point at `target`?

    Through the engine's property dependencies when the value came from the target's output, or by
    value (name, id or ARN) when the program wrote a literal.
    """
    deps = getattr(resource, "property_dependencies", None) or {}
    if any(getattr(d, "urn", None) == target.urn for d in deps.get(key, [])):
        return True
    value = prop(resource.props, key)
    return isinstance(value, str) and value in {v for v in target_values if v}


def arn_matches(arn: str, pattern: str) -> bool:
    """AWS Backup's resource patterns: '*' matches any run of characters, nothing else is special."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), arn) is not None


def vault_names(vault: Any) -> set[str]:
    return {prop(vault.props, "name"), prop(vault.props, "id"), prop(vault.props, "arn")} - {None}


def bucket_names(bucket: Any) -> set[str]:
    return {prop(bucket.props, "bucket"), prop(bucket.props, "id"), prop(bucket.props, "arn")} - {None}


def companions(resources: Iterable[Any], resource_type: str, key: str, target: Any,
               target_values: set[str]) -> list[Any]:
    """Resources of `resource_type` whose `key` property points at `target`."""
    return [r for r in of_type(resources, resource_type) if refers_to(r, key, target, target_values)]


# --- IAM policy documents --------------------------------------------------------------------------

def policy_statements(document: Any) -> list[Mapping[str, Any]]:
    """Statements of an IAM policy given as a JSON string or an object; [] when unreadable."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return []
    if not isinstance(document, Mapping):
        return []
    statements = document.get("Statement", [])
    if isinstance(statements, Mapping):
        statements = [statements]
    return [s for s in statements if isinstance(s, Mapping)] if isinstance(statements, list) else []


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [v for v in value if isinstance(v, str)]
    return []


def applies_to_everyone(statement: Mapping[str, Any]) -> bool:
    principal = statement.get("Principal")
    if principal == "*":
        return True
    return isinstance(principal, Mapping) and "*" in _strings(principal.get("AWS"))


def denied_actions(statement: Mapping[str, Any], wanted: Iterable[str]) -> set[str]:
    """Which of `wanted` an unconditional Deny-to-everyone statement covers (wildcards honoured)."""
    if statement.get("Effect") != "Deny" or not applies_to_everyone(statement):
        return set()
    if statement.get("Condition") or "NotAction" in statement or "NotPrincipal" in statement:
        return set()  # an exception to the deny is still an exception
    patterns = [a.lower() for a in _strings(statement.get("Action"))]
    return {w for w in wanted if any(fnmatch.fnmatchcase(w.lower(), p) for p in patterns)}


def denies_insecure_transport(statement: Mapping[str, Any]) -> bool:
    """A Deny of every S3 action to everyone when aws:SecureTransport is false (the AWS-documented
    TLS-only policy); denying only some actions would still let the others travel in the clear."""
    if statement.get("Effect") != "Deny" or not applies_to_everyone(statement) or "NotAction" in statement:
        return False
    if not {a.lower() for a in _strings(statement.get("Action"))} & {"s3:*", "*"}:
        return False
    condition = statement.get("Condition")
    if not isinstance(condition, Mapping):
        return False
    for operator, tests in condition.items():
        if operator.lower() != "bool" or not isinstance(tests, Mapping):
            continue
        for key, value in tests.items():
            if key.lower() == "aws:securetransport" and [str(v).lower() for v in _strings(value)
                                                         or [value]] == ["false"]:
                return True
    return False


# --- schedules -------------------------------------------------------------------------------------
# A copy of components/schedules.py (the pack runs in its own environment and imports nothing from the
# project); tests/test_schedules.py holds the two equal over a table of schedules. Change both.

_CRON = re.compile(r"^cron\((\S+) (\S+) (\S+) (\S+) (\S+) (\S+)\)$")
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_MONTHS = {m: i for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP",
                                       "OCT", "NOV", "DEC"), 1)}
_WEEKDAYS = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}
_UNIT_MINUTES = {"minute": 1, "hour": 60, "day": 1440}


def _values(field: str, lo: int, hi: int, names: dict[str, int]) -> Optional[set[int]]:
    """The values a cron field selects (`*`, `?`, `N`, `A-B`, `*/S`, `A-B/S`, `A/S`, lists and
    names); None for a field that is not plain (L, W, #, bad numbers) and so never "every day"."""
    selected: set[int] = set()
    for part in field.upper().split(","):
        base, _, step_text = part.partition("/")
        if step_text and not step_text.isdigit():
            return None
        step = int(step_text) if step_text else 1
        if base in ("*", "?"):
            start, end = lo, hi
        else:
            bounds = base.split("-")
            if len(bounds) > 2:
                return None
            numbers = [names.get(b, int(b) if b.isdigit() else -1) for b in bounds]
            if any(not lo <= n <= hi for n in numbers):
                return None
            start = numbers[0]
            end = numbers[-1] if len(numbers) == 2 else (hi if step_text else start)
        if step < 1:
            return None
        if end < start:  # a range that wraps (FRI-MON, 22-2), as Quartz-style cron allows
            span = list(range(start, hi + 1)) + list(range(lo, end + 1))
            selected.update(span[::step])
        else:
            selected.update(range(start, end + 1, step))
    return selected


def runs_at_least_daily(expression: Any) -> bool:
    """True when the AWS cron/rate expression fires on every calendar day (see the module doc)."""
    if not isinstance(expression, str):
        return False
    text = expression.strip()
    rate = _RATE.match(text)
    if rate:
        every = int(rate.group(1)) * _UNIT_MINUTES[rate.group(2).rstrip("s")]
        return 1 <= every <= 1440
    cron = _CRON.match(text)
    if not cron:
        return False
    minutes, hours, day_of_month, month, day_of_week, year = cron.groups()
    if not _values(minutes, 0, 59, {}) or not _values(hours, 0, 23, {}):
        return False  # AWS rejects it: it never runs
    if (day_of_month == "?") == (day_of_week == "?"):
        return False  # AWS requires exactly one of the two to be '?'
    if year != "*":
        return False
    months = _values(month, 1, 12, _MONTHS)
    if months != set(range(1, 13)):
        return False
    if day_of_month == "?":
        return _values(day_of_week, 1, 7, _WEEKDAYS) == set(range(1, 8))
    return _values(day_of_month, 1, 31, {}) == set(range(1, 32))


# --- baseline snapshot names -----------------------------------------------------------------------

def baseline_name_problem(name: Any, prefix: str, action_max_length: int) -> Optional[str]:
    """None when `name` is `<prefix>-YYYY-MM-DD-before-<action>[-<n>]` with a real date; else what is
    wrong. The CLI numbers a same-day re-run's snapshot -2, -3...: the number is not in the limit."""
    if not isinstance(name, str) or not name:
        return "has no Name tag"
    match = re.fullmatch(re.escape(prefix) + r"-(\d{4})-(\d{2})-(\d{2})-before-(.+)", name)
    if not match:
        return f"is named {name!r}; required form {prefix}-YYYY-MM-DD-before-<action>"
    year, month, day, action = int(match.group(1)), int(match.group(2)), int(match.group(3)), match.group(4)
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        return f"is named {name!r}; {match.group(1)}-{match.group(2)}-{match.group(3)} is not a calendar date"
    if not re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", action):
        return f"is named {name!r}; the action {action!r} must be lowercase words joined by '-'"
    numbered = re.fullmatch(r"(.+)-([2-9]|[1-9][0-9]+)", action)
    if numbered and len(action) > action_max_length:   # <action>-<n>: a same-day re-run's number
        action = numbered.group(1)
    if len(action) > action_max_length:
        return (f"is named {name!r}; the action is {len(action)} characters, "
                f"at most {action_max_length} allowed")
    return None


def iter_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string inside a property value, with its path (for secret scanning)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from iter_strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, Sequence) and not isinstance(value, bytes):
        for i, v in enumerate(value):
            yield from iter_strings(v, f"{path}.{i}")
