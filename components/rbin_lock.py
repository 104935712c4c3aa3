"""Recycle Bin rule lock (rbin LockRule) as a Pulumi dynamic resource.

aws.rbin.Rule accepts a lock_configuration, but the upstream provider's create has not sent it
(terraform-provider-aws#32534, open) and its read never reports the lock, so a rule can be live and
unlocked while the program says locked. This provider reads the rule's LockState after the rule exists
and calls LockRule when it is not locked. What Recycle Bin allows (rbin API reference, LockRule,
GetRule, UnlockRule):

- only Region-level rules without exclusion tags can be locked;
- a locked rule can't be modified or deleted, and its unlock delay (7..30 days) can't be changed;
- UnlockRule puts it in pending_unlock for the delay; a rule can be locked again meanwhile;
- once locked, LockState is only ever locked, pending_unlock or unlocked (never null again).

It never unlocks: deleting this resource only forgets it (an unlock is a deliberate `aws rbin
unlock-rule`, denied to operators by the guard rails and reported by the recycle-bin-unlock event
rule). Like the snapshot lock, the provider holds no boto3 client (the SDK pickles it into state).
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

from components.provider_errors import aws_failure_line

UNLOCK_DELAY_RANGE = (7, 30)     # LockConfiguration.UnlockDelay.UnlockDelayValue, in DAYS
RULE_ID_RE = re.compile(r"^[0-9a-zA-Z]{11}$")   # the rbin model's RuleIdentifier pattern
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
INPUT_KEYS = ("rule_id", "unlock_delay_days", "region")
OUTPUT_KEYS = ("lock_state", "locked_unlock_delay_days", "lock_end_time", "resource_type")


class RuleLockError(Exception):
    """Recycle Bin refuses (or would refuse) the lock; str() is the one line `pulumi up` shows."""


@dataclass
class RecycleBinRuleLockArgs:
    rule_id: pulumi.Input[str]                 # aws.rbin.Rule(...).id (the 11-character identifier)
    unlock_delay_days: pulumi.Input[int] = 7   # 7..30: days between an unlock request and the rule opening
    region: Optional[pulumi.Input[str]] = None  # default: the stack's aws:region


def _whole(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def validate_rule_lock_inputs(props: dict[str, Any]) -> tuple[dict[str, Any], list[CheckFailure]]:
    """Normalise the inputs and list every bad one. Unknown (preview) values pass unchecked."""
    clean, failures = dict(props), []

    def known(key: str) -> bool:
        return props.get(key) != _UNKNOWN

    if known("rule_id") and not (isinstance(props.get("rule_id"), str) and RULE_ID_RE.match(props["rule_id"])):
        failures.append(CheckFailure("rule_id", f"rule_id = {props.get('rule_id')!r}: must be a Recycle Bin rule "
                                                "identifier of 11 letters and digits"))
    if known("unlock_delay_days"):
        days = _whole(props.get("unlock_delay_days"))
        lo, hi = UNLOCK_DELAY_RANGE
        if days is None or not lo <= days <= hi:
            raw = props.get("unlock_delay_days")
            shown = _whole(raw) if _whole(raw) is not None else raw   # the engine sends 45 as 45.0
            failures.append(CheckFailure("unlock_delay_days", f"unlock_delay_days = {shown!r}: must be a whole "
                                                              f"number from {lo} to {hi}"))
        else:
            clean["unlock_delay_days"] = days
    region = props.get("region")
    if known("region") and region is not None and not (isinstance(region, str) and REGION_RE.match(region)):
        failures.append(CheckFailure("region", f"region = {region!r}: must be an AWS region name like ap-south-1"))
    return clean, failures


def default_rbin_client(region: Optional[str]):
    import boto3
    from botocore.config import Config
    return boto3.client("rbin", region_name=region or None, config=Config(retries={"mode": "standard"}))


def _delay_of(rule: dict[str, Any]) -> Optional[int]:
    delay = (rule.get("LockConfiguration") or {}).get("UnlockDelay") or {}
    return delay.get("UnlockDelayValue") if delay.get("UnlockDelayUnit", "DAYS") == "DAYS" else None


def _error(action: str, rule_id: str, e: Exception) -> RuleLockError:
    return RuleLockError(aws_failure_line(action, rule_id, e))


class RecycleBinRuleLockProvider(ResourceProvider):
    """Lock one Recycle Bin rule. The resource id is the rule id."""

    def __init__(self, client_factory: Optional[Callable[[Optional[str]], Any]] = None) -> None:
        super().__init__()
        self._client_factory = client_factory   # tests hand in a Stubber-wrapped client; None in real use

    def _rbin(self, region: Optional[str]):
        return (self._client_factory or default_rbin_client)(region)

    @staticmethod
    def _get(rbin, rule_id: str) -> Optional[dict[str, Any]]:
        from botocore.exceptions import ClientError
        try:
            return rbin.get_rule(Identifier=rule_id)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None
            raise _error("GetRule", rule_id, e) from None

    @staticmethod
    def _refuse_if_rbin_forbids(rule_id: str, rule: dict[str, Any], days: int) -> None:
        """Refuse what LockRule would refuse, or what it cannot change, before calling it."""
        if rule.get("ResourceTags"):
            raise RuleLockError(f"Recycle Bin rule {rule_id} is tag-level (ResourceTags set); only Region-level "
                                "rules can be locked: remove the resource tags from the rule")
        if rule.get("ExcludeResourceTags"):
            raise RuleLockError(f"Recycle Bin rule {rule_id} has exclusion tags; a Region-level rule with exclusion "
                                "tags cannot be locked: remove them")
        live = _delay_of(rule)
        if rule.get("LockState") == "locked" and live is not None and live < days:
            raise RuleLockError(
                f"Recycle Bin rule {rule_id} is locked with an unlock delay of {live} days; the delay of a locked "
                f"rule cannot be changed to {days}: keep unlock_delay_days {live}, or unlock the rule (aws rbin "
                f"unlock-rule), wait {live} days, and run pulumi up again")

    def _ensure_locked(self, props: dict[str, Any]) -> dict[str, Any]:
        rule_id, days = props["rule_id"], int(props["unlock_delay_days"])
        rbin = self._rbin(props.get("region"))
        rule = self._get(rbin, rule_id)
        if rule is None:
            raise RuleLockError(f"Recycle Bin rule {rule_id} does not exist")
        self._refuse_if_rbin_forbids(rule_id, rule, days)
        if rule.get("LockState") != "locked":
            # unlocked, never locked (absent), or pending_unlock (locking again cancels the unlock).
            try:
                rule = rbin.lock_rule(Identifier=rule_id, LockConfiguration={
                    "UnlockDelay": {"UnlockDelayValue": days, "UnlockDelayUnit": "DAYS"}})
            except Exception as e:  # noqa: BLE001 - one line naming the rule
                raise _error("LockRule", rule_id, e) from None
        # else: already locked at least this firmly (the provider did send it, or someone did): adopt.
        return self._outputs(rule_id, props, rule, rbin.meta.region_name)

    @staticmethod
    def _outputs(rule_id: str, inputs: dict[str, Any], rule: dict[str, Any], region: Optional[str]) -> dict[str, Any]:
        outs = {key: inputs.get(key) for key in INPUT_KEYS}
        end = rule.get("LockEndTime")
        outs.update(rule_id=rule_id, region=region, lock_state=rule.get("LockState"),
                    locked_unlock_delay_days=_delay_of(rule), resource_type=rule.get("ResourceType"),
                    lock_end_time=end.isoformat() if isinstance(end, dt.datetime) else end)
        return outs

    # -- ResourceProvider --

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        clean, failures = validate_rule_lock_inputs(news)
        return CheckResult(clean, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(props["rule_id"], self._ensure_locked(props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        rbin = self._rbin(props.get("region"))
        rule = self._get(rbin, id_)
        if rule is None:
            return ReadResult("", {})   # the rule is gone: so is its lock
        return ReadResult(id_, self._outputs(id_, props, rule, rbin.meta.region_name))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in ("rule_id", "region") if news.get(k) not in (None, olds.get(k))]
        changed = _whole(news.get("unlock_delay_days")) != _whole(olds.get("unlock_delay_days"))
        drifted = olds.get("lock_state") not in (None, "locked")   # refresh saw it unlocked or unlocking
        wanted = _whole(news.get("unlock_delay_days"))
        if changed and not replaces and olds.get("lock_state") == "locked" and wanted is not None:
            # Fail `pulumi preview`, not `up`: only the live rule knows whether it is still locked.
            rule = self._get(self._rbin(olds.get("region")), _id)
            if rule is not None:
                self._refuse_if_rbin_forbids(_id, rule, wanted)
        return DiffResult(changes=bool(replaces or changed or drifted), replaces=replaces,
                          delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._ensure_locked(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Never unlocks: removing the resource from the program leaves the rule locked."""
        return None


class RecycleBinRuleLock(pulumi.dynamic.Resource, module="quickport", name="RecycleBinRuleLock"):
    """Makes sure one Region-level Recycle Bin rule is locked (rbin LockRule). The id is the rule id."""

    lock_state: pulumi.Output[str]
    locked_unlock_delay_days: pulumi.Output[int]
    lock_end_time: pulumi.Output[str]

    def __init__(self, name: str, args: RecycleBinRuleLockArgs, opts: Optional[pulumi.ResourceOptions] = None):
        region = args.region if args.region is not None else pulumi.Config("aws").get("region")
        inputs = {"rule_id": args.rule_id, "unlock_delay_days": args.unlock_delay_days, "region": region}
        plain = {k: v for k, v in inputs.items() if not isinstance(v, (pulumi.Output, pulumi.Resource))}
        _, failures = validate_rule_lock_inputs({k: plain.get(k, _UNKNOWN) for k in INPUT_KEYS})
        if failures:
            raise ValueError(f"RecycleBinRuleLock {name}: {failures[0].reason}")
        super().__init__(RecycleBinRuleLockProvider(), name, {**inputs, **{k: None for k in OUTPUT_KEYS}}, opts)
