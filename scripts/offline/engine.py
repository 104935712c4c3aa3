"""Run the Pulumi program on the SDK's mock engine: no Pulumi CLI, no AWS credentials.

`backupctl preview`, the offline policy gate and the tests all go through `run_program`, so what the
tests check is what the preview shows and what the policy pack judges.

The SDK's MockMonitor sees every RegisterResource request; the subclass here keeps the options the
plain mocks drop (protect, retainOnDelete, parent, dependencies) so they can be shown and checked.
"""
from __future__ import annotations

import json
import runpy
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from components.config import project_dir
from components.errors import ConfigError
from components.tags import NAMESPACE

MOCK_ACCOUNT_ID = "123456789012"


@dataclass
class DeclaredResource:
    """One resource as the engine received it, in the shape `pulumi preview --json` would describe."""
    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    protect: bool
    retain_on_delete: bool
    inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    provider: str = ""
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    delete_before_replace: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    additional_secret_outputs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "urn": self.urn, "parent": self.parent,
                "protect": self.protect, "retainOnDelete": self.retain_on_delete,
                "inputs": plain_json(self.inputs)}


def plain_json(value: Any, leaf: Callable[[Any], Any] = str) -> Any:
    """A property value as plain JSON: mappings and sequences recursively, JSON scalars as they are,
    anything else (unknowns, resource references) through `leaf` (default: a readable string)."""
    if isinstance(value, Mapping):
        return {str(k): plain_json(v, leaf) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v, leaf) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return leaf(value)


# ARNs whose AWS shape differs from the generic `arn:aws:<service>:<region>:<account>:<type>/<name>`.
AWS_ARN_SHAPES = {
    "aws:backup/vault:Vault": "arn:aws:backup:{region}:{account}:backup-vault:{name}",
    "aws:backup/plan:Plan": "arn:aws:backup:{region}:{account}:backup-plan:{id}",
    "aws:sns/topic:Topic": "arn:aws:sns:{region}:{account}:{name}",
    "aws:iam/role:Role": "arn:aws:iam::{account}:role/{name}",
    "aws:iam/policy:Policy": "arn:aws:iam::{account}:policy/{name}",
    "aws:rbin/rule:Rule": "arn:aws:rbin:{region}:{account}:rule/{id}",
    "aws:kms/key:Key": "arn:aws:kms:{region}:{account}:key/{key_id}",
    "aws:cloudwatch/metricAlarm:MetricAlarm": "arn:aws:cloudwatch:{region}:{account}:alarm:{name}",
    "aws:cloudwatch/eventRule:EventRule": "arn:aws:events:{region}:{account}:rule/{name}",
    "aws:cloudtrail/trail:Trail": "arn:aws:cloudtrail:{region}:{account}:trail/{name}",
    "aws:backup/logicallyAirGappedVault:LogicallyAirGappedVault":
        "arn:aws:backup:{region}:{account}:backup-vault:{name}",
}


class OfflineMocks:
    """Answers the engine's questions the way AWS would shape them, with a fake account."""

    def __init__(self, region: str):
        self.region = region
        self._provider_regions: dict[str, str] = {}

    # pulumi.runtime.Mocks protocol (duck-typed: the SDK only calls these two)
    def new_resource(self, args) -> tuple[Optional[str], dict]:
        state = dict(args.inputs)
        if not args.custom:
            return None, state
        service = args.typ.split(":")[1].split("/")[0] if args.typ.count(":") >= 2 else "custom"
        physical = state.get("name") or state.get("bucket") or args.name
        kind = args.typ.split(":")[-1].lower()
        state.setdefault("arn", f"arn:aws:{service}:{self.region}:{MOCK_ACCOUNT_ID}:{kind}/{physical}")
        if args.typ == "aws:s3/bucket:Bucket" or args.typ == "aws:s3/bucketV2:BucketV2":
            state.setdefault("bucket", args.name)
            state["arn"] = f"arn:aws:s3:::{state['bucket']}"
        if args.typ == "aws:kms/key:Key":
            state.setdefault("keyId", f"{args.name}-key-id")
        if args.typ in ("aws:iam/role:Role", "aws:sns/topic:Topic", "aws:ssm/document:Document"):
            state.setdefault("name", args.name)
        if args.typ == "pulumi:providers:aws" and state.get("region"):
            self._provider_regions[args.name] = state["region"]
        shape = AWS_ARN_SHAPES.get(args.typ)
        if shape and "arn" not in args.inputs:
            # The ARN as AWS shapes it, in the region of the resource's provider (or its own region).
            state["arn"] = shape.format(
                region=state.get("region") or self._provider_region(args.provider), account=MOCK_ACCOUNT_ID,
                name=state.get("name") or args.name, id=f"{args.name}-id", key_id=state.get("keyId"))
        return f"{args.name}-id", state

    def _provider_region(self, provider_ref: str) -> str:
        """Region of an explicit aws.Provider ('<urn>::<id>'; the urn ends in '::<name>')."""
        parts = (provider_ref or "").split("::")
        return self._provider_regions.get(parts[-2] if len(parts) >= 2 else "", self.region)

    def call(self, args) -> tuple[dict, list]:
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": MOCK_ACCOUNT_ID, "arn": f"arn:aws:iam::{MOCK_ACCOUNT_ID}:user/offline",
                    "userId": "AIDAOFFLINE", "id": MOCK_ACCOUNT_ID}, []
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region, "id": self.region}, []
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}, []
        # The SDK's MockMonitor iterates the failures list; None would crash every invoke.
        return {}, []


def _recording_monitor_class():
    from pulumi.runtime.mocks import MockMonitor

    class RecordingMonitor(MockMonitor):
        """MockMonitor that also keeps each registration's resource options."""

        def __init__(self, mocks):
            super().__init__(mocks)
            self.declared: list[DeclaredResource] = []

        def RegisterResource(self, request):
            from pulumi.runtime import rpc
            response = super().RegisterResource(request)
            if request.type == "pulumi:pulumi:Stack":
                return response
            inputs = rpc.deserialize_properties(request.object)
            outputs = self.resources.get(response.urn)
            self.declared.append(DeclaredResource(
                type=request.type, name=request.name, urn=response.urn, parent=request.parent,
                custom=bool(request.custom), protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete), inputs=inputs,
                outputs=dict(outputs.state) if outputs else {}, id=response.id or "",
                provider=request.provider, dependencies=list(request.dependencies),
                property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
                delete_before_replace=bool(request.deleteBeforeReplace),
                ignore_changes=list(request.ignoreChanges),
                additional_secret_outputs=list(request.additionalSecretOutputs)))
            return response

    return RecordingMonitor


def pulumi_config_values(raw: Mapping[str, Any]) -> dict[str, str]:
    """Stack-file config as the engine hands it to a program: objects and lists as JSON strings."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}


def run_program(program: Callable[[], Any], config: Mapping[str, Any], *, stack: str = "prod",
                project: str = NAMESPACE) -> list[DeclaredResource]:
    """Run `program` on the mock engine with the given stack-file config; return what it declared.

    Runs on a fresh thread: the SDK keeps its settings in context variables, and a new thread starts
    from their defaults, so runs never see each other's config or resources.
    """
    result: dict[str, Any] = {}

    def run() -> None:
        import asyncio

        from pulumi.runtime import config as runtime_config
        from pulumi.runtime import mocks, settings
        from pulumi.runtime import stack as runtime_stack
        from pulumi.runtime.sync_await import _sync_await

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            settings.reset_options(project=project, stack=stack, preview=True)
            runtime_config.set_all_config(pulumi_config_values(config))
            region = str(config.get("aws:region", "ap-south-1"))
            monitor = _recording_monitor_class()(OfflineMocks(region))
            result["declared"] = monitor.declared
            mocks.set_mocks(monitor.mocks, project=project, stack=stack, preview=True, monitor=monitor)
            _sync_await(runtime_stack.run_pulumi_func(program))
        except BaseException as e:  # noqa: BLE001 handed to the caller's thread below
            result["error"] = e
        finally:
            loop.close()

    worker = threading.Thread(target=run, name="offline-pulumi-engine")
    worker.start()
    worker.join()
    if "error" in result:
        raise result["error"]
    return result["declared"]


def run_stack_program(config: Mapping[str, Any], *, stack: str = "prod",
                      root: Optional[Path] = None) -> list[DeclaredResource]:
    """Run the project's own __main__.py exactly as `pulumi preview` would start it."""
    program = (root or project_dir()) / "__main__.py"
    if not program.is_file():
        raise ConfigError(f"no Pulumi program at {program}: run this in the project directory (where "
                          f"Pulumi.yaml and __main__.py are)")
    return run_program(lambda: runpy.run_path(str(program), run_name="__main__"), config, stack=stack)
