"""EBS snapshot lock (EC2 LockSnapshot) as a Pulumi dynamic resource.

pulumi-aws has no resource for LockSnapshot, so this small provider drives the three EC2 calls
(LockSnapshot, DescribeLockedSnapshots, UnlockSnapshot) over boto3. What EC2 allows, by lock state:

- governance          : unlock, change mode, lengthen or shorten the duration.
- compliance-cooloff  : same as governance (the cooling-off window after a compliance lock).
- compliance          : only lengthen the duration; no unlock, no mode change, no CoolOffPeriod.
- expired             : the lock is gone; the snapshot can be deleted.

The provider object is pickled into the stack state by the SDK (dill) and unpickled in the
engine's dynamic-provider process, so it holds no boto3 client: each method builds its own.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)
from pulumi.runtime.rpc import UNKNOWN as _UNKNOWN

from components.provider_errors import aws_failure_line  # the SDK's "known only after apply" marker

LOCK_MODES = ("governance", "compliance")
DAYS_RANGE = (1, 36500)          # LockSnapshot LockDuration (RetentionPeriodRequestDays)
COOL_OFF_RANGE = (0, 72)         # CoolOffPeriod is 1..72 hours; 0 here means "omit it"
SNAPSHOT_ID_RE = re.compile(r"^snap-[0-9a-f]{8,17}$")
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")

# A retried create (the first attempt locked the snapshot, then failed to report back) finds its
# own lock expiring a little before now + days; adopt it rather than re-lock for a few seconds.
ADOPT_SLACK = dt.timedelta(hours=1)

INPUT_KEYS = ("snapshot_id", "mode", "days", "cool_off_hours", "region")
OUTPUT_KEYS = ("lock_mode", "lock_duration_days", "cool_off_period_hours", "lock_state", "lock_expires_on")


class SnapshotLockError(Exception):
    """EC2 refuses (or would refuse) the lock change; str() is the one line shown by `pulumi up`."""


@dataclass
class EbsSnapshotLockArgs:
    """What to lock and how. Any field may be a pulumi.Input."""
    snapshot_id: pulumi.Input[str]             # the EBS snapshot, e.g. aws.ebs.Snapshot(...).id
    mode: pulumi.Input[str]                    # "governance" (permitted users may unlock) or "compliance"
    days: pulumi.Input[int]                    # lock duration, 1..36500 days
    cool_off_hours: pulumi.Input[int] = 0      # compliance only: 1..72 h in which it may still be unlocked; 0 = none
    region: Optional[pulumi.Input[str]] = None  # default: the stack's aws:region, else the environment's


# --- validation (check) ---------------------------------------------------------------------------

def _whole_number(value: Any) -> Optional[int]:
    """Engine numbers arrive as floats (protobuf Struct); accept 30.0 as 30, reject 30.5 and bools."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def validate_lock_inputs(props: dict[str, Any]) -> tuple[dict[str, Any], list[CheckFailure]]:
    """Normalise the inputs and list every bad one. Unknown (preview) values pass unchecked."""
    clean = dict(props)
    failures: list[CheckFailure] = []

    def fail(key: str, allowed: str) -> None:
        failures.append(CheckFailure(key, f"{key} = {_normalised(props.get(key))!r}: {allowed}"))

    def known(key: str) -> bool:
        return props.get(key) != _UNKNOWN

    if known("snapshot_id") and not (isinstance(props.get("snapshot_id"), str)
                                     and SNAPSHOT_ID_RE.match(props["snapshot_id"])):
        fail("snapshot_id", "must be an EBS snapshot id like snap-0123456789abcdef0")
    mode = props.get("mode")
    if known("mode") and mode not in LOCK_MODES:
        fail("mode", "must be one of " + ", ".join(LOCK_MODES))
    if known("days"):
        days = _whole_number(props.get("days"))
        if days is None or not DAYS_RANGE[0] <= days <= DAYS_RANGE[1]:
            fail("days", f"must be a whole number from {DAYS_RANGE[0]} to {DAYS_RANGE[1]}")
        else:
            clean["days"] = days
    if known("cool_off_hours"):
        raw = props.get("cool_off_hours")
        hours = 0 if raw is None else _whole_number(raw)
        if hours is None or not COOL_OFF_RANGE[0] <= hours <= COOL_OFF_RANGE[1]:
            fail("cool_off_hours", f"must be a whole number from {COOL_OFF_RANGE[0]} to {COOL_OFF_RANGE[1]}")
        elif hours and mode == "governance":
            fail("cool_off_hours", "must be 0 for mode governance (a cooling-off period applies only to compliance)")
        else:
            clean["cool_off_hours"] = hours
    region = props.get("region")
    if known("region") and region is not None and not (isinstance(region, str) and REGION_RE.match(region)):
        fail("region", "must be an AWS region name like ap-south-1, or unset")
    return clean, failures


# --- EC2 access -----------------------------------------------------------------------------------

def default_ec2_client(region: Optional[str]):
    """A boto3 EC2 client with standard retries (backoff with jitter on throttling)."""
    import boto3
    from botocore.config import Config
    return boto3.client("ec2", region_name=region or None, config=Config(retries={"mode": "standard"}))


def _iso(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    return str(value)


def _mode_of(lock_state: str) -> str:
    # LockSnapshot/DescribeLockedSnapshots return a state, not a mode; cooloff is still compliance.
    return "governance" if lock_state == "governance" else "compliance"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _error(action: str, snapshot_id: str, e: Exception) -> SnapshotLockError:
    return SnapshotLockError(aws_failure_line(action, snapshot_id, e))


class EbsSnapshotLockProvider(ResourceProvider):
    """CRUD for one snapshot's lock. The resource id is the snapshot id."""

    def __init__(self, client_factory: Optional[Callable[[Optional[str]], Any]] = None) -> None:
        super().__init__()
        # Only seam: tests hand in a Stubber-wrapped client. None in real use, so nothing of boto3
        # is pickled into the state.
        self._client_factory = client_factory

    def _ec2(self, region: Optional[str]):
        return (self._client_factory or default_ec2_client)(region)

    # -- EC2 calls --

    @staticmethod
    def _describe(ec2, snapshot_id: str) -> Optional[dict[str, Any]]:
        """The snapshot's live lock, or None when it has none (never locked, unlocked or expired)."""
        from botocore.exceptions import ClientError
        try:
            found = ec2.describe_locked_snapshots(SnapshotIds=[snapshot_id]).get("Snapshots", [])
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "InvalidSnapshot.NotFound":
                return None
            raise _error("DescribeLockedSnapshots", snapshot_id, e) from None
        for info in found:
            if info.get("SnapshotId") == snapshot_id and info.get("LockState") not in (None, "expired"):
                return info
        return None

    @staticmethod
    def _lock(ec2, snapshot_id: str, mode: str, days: int, cool_off_hours: int,
              live: Optional[dict[str, Any]]) -> dict[str, Any]:
        params: dict[str, Any] = {"SnapshotId": snapshot_id, "LockMode": mode, "LockDuration": days}
        # CoolOffPeriod: compliance only, 1..72; EC2 rejects it once a compliance lock is past cool-off.
        if mode == "compliance" and cool_off_hours and not (live and live.get("LockState") == "compliance"):
            params["CoolOffPeriod"] = cool_off_hours
        try:
            return ec2.lock_snapshot(**params)
        except Exception as e:  # noqa: BLE001 botocore errors become one line naming the snapshot
            raise _error("LockSnapshot", snapshot_id, e) from None

    # -- state shape --

    @staticmethod
    def _outputs(snapshot_id: str, inputs: dict[str, Any], info: dict[str, Any],
                 region: Optional[str]) -> dict[str, Any]:
        state = info.get("LockState")
        outs = {key: inputs.get(key) for key in INPUT_KEYS}
        outs.update(
            snapshot_id=snapshot_id,
            region=region,
            lock_mode=_mode_of(state) if state else inputs.get("mode"),
            lock_duration_days=_normalised(info.get("LockDuration", inputs.get("days"))),
            cool_off_period_hours=info.get("CoolOffPeriod") or 0,
            lock_state=state,
            lock_expires_on=_iso(info.get("LockExpiresOn")),
        )
        return outs

    @staticmethod
    def _satisfies(live: dict[str, Any], mode: str, days: int) -> bool:
        """The live lock is at least what was asked: same mode and an expiry at least as late."""
        if _mode_of(live.get("LockState", "")) != mode:
            return False
        expires = live.get("LockExpiresOn")
        if expires is None:
            # A pending snapshot's lock duration starts only when the snapshot completes.
            return int(live.get("LockDuration") or 0) >= days
        if isinstance(expires, str):
            expires = dt.datetime.fromisoformat(expires.replace("Z", "+00:00"))
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=dt.timezone.utc)
        return expires + ADOPT_SLACK >= _now() + dt.timedelta(days=days)

    @staticmethod
    def _refuse_if_ec2_forbids(snapshot_id: str, live: Optional[dict[str, Any]], mode: str,
                               days: Optional[int]) -> None:
        """Past its cooling-off period a compliance lock can only be lengthened (EC2 LockSnapshot docs)."""
        if not live or live.get("LockState") != "compliance":
            return
        until = _iso(live.get("LockExpiresOn")) or "its expiry"
        if mode != "compliance":
            raise SnapshotLockError(
                f"snapshot {snapshot_id} is locked in compliance mode until {until} and past its cooling-off "
                f"period; EC2 does not allow changing it to {mode}: keep mode compliance")
        current = int(live.get("LockDuration") or 0)
        if days is not None and days < current:
            raise SnapshotLockError(
                f"snapshot {snapshot_id} is locked in compliance mode for {current} days (until {until}); "
                f"EC2 only allows extending it: days must be at least {current}, not {days}")

    # -- ResourceProvider --

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        clean, failures = validate_lock_inputs(news)
        return CheckResult(clean, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        snapshot_id, mode = props["snapshot_id"], props["mode"]
        days, cool_off = int(props["days"]), int(props.get("cool_off_hours") or 0)
        ec2 = self._ec2(props.get("region"))
        live = self._describe(ec2, snapshot_id)
        if live and self._satisfies(live, mode, days):
            # Already locked at least this firmly (by hand, or by an earlier attempt): adopt it.
            info = live
        else:
            self._refuse_if_ec2_forbids(snapshot_id, live, mode, days)
            info = self._lock(ec2, snapshot_id, mode, days, cool_off, live)
        return CreateResult(snapshot_id, self._outputs(snapshot_id, props, info, ec2.meta.region_name))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        region = props.get("region")
        ec2 = self._ec2(region)
        live = self._describe(ec2, id_)
        if live is None:
            # Expired or removed outside Pulumi: an empty id tells the engine the resource is gone.
            return ReadResult("", {})
        return ReadResult(id_, self._outputs(id_, props, live, ec2.meta.region_name))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = []
        if news.get("snapshot_id") != olds.get("snapshot_id"):
            replaces.append("snapshot_id")   # a lock belongs to one snapshot
        if news.get("region") not in (None, olds.get("region")):
            replaces.append("region")
        changed = [k for k in ("mode", "days", "cool_off_hours")
                   if _normalised(news.get(k)) != _normalised(olds.get(k))]
        # Drift seen by refresh: the live lock is weaker than declared (mode changed, or shortened).
        live_days, want_days = _whole_number(olds.get("lock_duration_days")), _whole_number(news.get("days"))
        drifted = (olds.get("lock_mode") not in (None, news.get("mode"))
                   or (live_days is not None and want_days is not None and live_days < want_days))
        if not replaces and olds.get("lock_mode") == "compliance" and self._weakens(olds, news):
            # Fail `pulumi preview`, not halfway through `up`, when EC2 will refuse the change. Only
            # the live state knows whether the cooling-off period (when it is still allowed) is over.
            self._refuse_if_ec2_forbids(_id, self._describe(self._ec2(olds.get("region")), _id),
                                        news["mode"], want_days)
        return DiffResult(changes=bool(replaces or changed or drifted), replaces=replaces,
                          delete_before_replace=False)

    @staticmethod
    def _weakens(olds: dict[str, Any], news: dict[str, Any]) -> bool:
        """Does the declared lock ask for less than the current compliance lock (known values only)?"""
        live_days, want_days = _whole_number(olds.get("lock_duration_days")), _whole_number(news.get("days"))
        if news.get("mode") == _UNKNOWN or want_days is None:
            return False
        return news.get("mode") != "compliance" or (live_days is not None and want_days < live_days)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        mode, days = news["mode"], int(news["days"])
        cool_off = int(news.get("cool_off_hours") or 0)
        ec2 = self._ec2(news.get("region") or olds.get("region"))
        live = self._describe(ec2, id_)
        self._refuse_if_ec2_forbids(id_, live, mode, days)
        if (live and live.get("LockState") == "compliance" and int(live.get("LockDuration") or 0) == days):
            # Only cool_off_hours changed, and the cooling-off period is over: nothing EC2 can change.
            info = live
        else:
            info = self._lock(ec2, id_, mode, days, cool_off, live)
        return UpdateResult(self._outputs(id_, news, info, ec2.meta.region_name))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        ec2 = self._ec2(props.get("region"))
        live = self._describe(ec2, id_)
        if live is None:
            return   # expired or already unlocked: nothing holds the snapshot
        if live.get("LockState") == "compliance":
            until = _iso(live.get("LockExpiresOn")) or "its expiry"
            raise SnapshotLockError(
                f"snapshot {id_} is locked in compliance mode and past its cooling-off period: EC2 cannot "
                f"unlock it until {until}. After that this delete succeeds; or remove the lock from the "
                f"stack state without touching AWS: pulumi state delete <urn of this EbsSnapshotLock>")
        # governance, or compliance still in its cooling-off period: EC2 allows unlocking.
        try:
            ec2.unlock_snapshot(SnapshotId=id_)
        except Exception as e:  # noqa: BLE001 one line naming the snapshot
            raise _error("UnlockSnapshot", id_, e) from None


def _normalised(value: Any) -> Any:
    whole = _whole_number(value)
    return whole if whole is not None else value


class EbsSnapshotLock(pulumi.dynamic.Resource, module="quickport", name="EbsSnapshotLock"):
    """Locks one EBS snapshot against deletion (EC2 snapshot lock). The id is the snapshot id."""

    snapshot_id: pulumi.Output[str]
    lock_mode: pulumi.Output[str]
    lock_duration_days: pulumi.Output[int]
    cool_off_period_hours: pulumi.Output[int]
    lock_state: pulumi.Output[str]
    lock_expires_on: pulumi.Output[str]

    def __init__(self, name: str, args: EbsSnapshotLockArgs,
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        region = args.region if args.region is not None else pulumi.Config("aws").get("region")
        inputs = {"snapshot_id": args.snapshot_id, "mode": args.mode, "days": args.days,
                  "cool_off_hours": args.cool_off_hours if args.cool_off_hours is not None else 0,
                  "region": region}
        # Plain values are checked now so a bad value fails `preview` here, not mid-`up`.
        plain = {k: v for k, v in inputs.items() if not isinstance(v, (pulumi.Output, pulumi.Resource))
                 and not _is_awaitable(v)}
        _, failures = validate_lock_inputs({k: plain.get(k, _UNKNOWN) for k in INPUT_KEYS})
        if failures:
            raise ValueError(f"EbsSnapshotLock {name}: {failures[0].reason}")
        super().__init__(EbsSnapshotLockProvider(), name,
                         {**inputs, **{key: None for key in OUTPUT_KEYS}}, opts)


def _is_awaitable(value: Any) -> bool:
    import inspect
    return inspect.isawaitable(value)
