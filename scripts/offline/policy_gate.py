"""The offline policy gate: run the CrossGuard pack in policies/ the way `pulumi preview` does.

The Pulumi CLI runs a Python pack through its `pulumi-analyzer-policy-python` plugin, which starts
`python -u -m pulumi.policy <engine-address> .` in the pack directory with the stack's config in
PULUMI_CONFIG (plus PULUMI_PROJECT/STACK/DRY_RUN), reads the port the pack prints, and talks to it
over the analyzer gRPC protocol: Handshake, ConfigureStack, GetAnalyzerInfo, Configure (the policy
config reconciled with the schema defaults and validated), Analyze for each resource (inputs and
options), AnalyzeStack once with every resource (outputs, parents, dependencies). This module does
the same with the resources the mock engine declared, so CI needs neither the CLI nor AWS.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from components.config import project_dir
from components.tags import NAMESPACE

ENFORCEMENT_LEVELS = ("advisory", "mandatory", "remediate", "disabled")
# pulumi_policy's sentinel for a value not known during preview (see pulumi_policy/proxy.py).
UNKNOWN_STRING_VALUE = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
_GRPC_OPTIONS = [("grpc.max_receive_message_length", 400 * 1024 * 1024),
                 ("grpc.max_send_message_length", 400 * 1024 * 1024)]


def default_pack_dir() -> Path:
    """policies/ of the Pulumi project (see components.config.project_dir)."""
    return project_dir() / "policies"


class PolicyConfigError(ValueError):
    """The policy config file is wrong: one line naming the policy/field and what is allowed."""


class PolicyPackError(RuntimeError):
    """The pack could not be started or answered with an error."""


@dataclass(frozen=True)
class Violation:
    policy: str
    urn: str                 # "" when the violation is about the stack as a whole
    message: str             # the rule's own message (the description is kept apart)
    level: str               # advisory | mandatory
    description: str = ""
    severity: str = ""

    def to_json(self) -> dict[str, str]:
        return {"policy": self.policy, "urn": self.urn, "message": self.message, "level": self.level}


@dataclass
class PolicyInfo:
    name: str
    description: str
    enforcement_level: str
    kind: str                               # resource | stack
    schema: dict[str, Any] = field(default_factory=dict)   # {"properties": ..., "required": ...}


@dataclass
class GateResult:
    pack: str
    version: str
    violations: list[Violation]
    analyzed: int

    @property
    def mandatory(self) -> list[Violation]:
        return [v for v in self.violations if v.level == "mandatory"]


# --- the policy config file (same JSON format as `pulumi preview --policy-pack-config`) -----------

def load_policy_config(path: Path) -> dict[str, dict[str, Any]]:
    """Parse the file as the CLI does: {"<policy>|all": "<level>" | {"enforcementLevel": ..., knobs}}.

    Returns {policy: {"enforcementLevel"?: level, knob: value}}; raises PolicyConfigError.
    """
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise PolicyConfigError(f"policy config {path}: cannot read: {e.strerror}") from None
    if not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise PolicyConfigError(f"policy config {path}: not valid JSON: {e}") from None
    return parse_policy_config(doc, f"policy config {path}")


def parse_policy_config(doc: Any, source: str = "policy config") -> dict[str, dict[str, Any]]:
    """Normalise the JSON document: a string value is that policy's enforcement level."""
    if not isinstance(doc, dict):
        raise PolicyConfigError(f"{source}: must be a JSON object of policy name -> config")
    result: dict[str, dict[str, Any]] = {}
    for name, value in doc.items():
        if isinstance(value, str):
            value = {"enforcementLevel": value}
        if not isinstance(value, dict):
            raise PolicyConfigError(f"{source}: {name}: must be an enforcement level string or an object")
        level = value.get("enforcementLevel")
        if level is not None and level not in ENFORCEMENT_LEVELS:
            raise PolicyConfigError(f"{source}: {name}.enforcementLevel = {level!r}: must be one "
                                    f"of {', '.join(ENFORCEMENT_LEVELS)}")
        result[name] = dict(value)
    return result


def reconcile_policy_config(policies: Sequence[PolicyInfo], initial: Mapping[str, Mapping[str, Any]],
                            given: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Defaults from each schema, then the pack's initial config, then the file; validated.

    Mirrors the CLI's ReconcilePolicyPackConfig (an "all" entry sets every policy's level). Stricter
    than the CLI in one way: an unknown policy name or knob is an error, since a typo would otherwise
    silently leave the strategy's default in force.
    """
    import jsonschema

    given = parse_policy_config(dict(given))
    by_name = {p.name: p for p in policies}
    for name, value in given.items():
        if name == "all":
            if set(value) - {"enforcementLevel"}:
                raise PolicyConfigError("policy config: all: only enforcementLevel may be set for all policies")
            continue
        if name not in by_name:
            raise PolicyConfigError(f"policy config: {name}: no such policy; allowed: all, "
                                    + ", ".join(sorted(by_name)))
        knobs = set((by_name[name].schema.get("properties") or {}))
        unknown = sorted(set(value) - knobs - {"enforcementLevel"})
        if unknown:
            allowed = ", ".join(sorted(knobs | {"enforcementLevel"}))
            raise PolicyConfigError(f"policy config: {name}.{unknown[0]}: no such setting; allowed: {allowed}")

    result: dict[str, dict[str, Any]] = {}
    for p in policies:
        props = {k: s["default"] for k, s in (p.schema.get("properties") or {}).items() if "default" in s}
        result[p.name] = {"enforcementLevel": p.enforcement_level, **props}
    for layer in (initial, given):
        if "enforcementLevel" in layer.get("all", {}):
            for entry in result.values():
                entry["enforcementLevel"] = layer["all"]["enforcementLevel"]
        for name, value in layer.items():
            if name in result:
                result[name].update(value)

    for p in policies:
        schema = {"type": "object", "properties": p.schema.get("properties") or {}}
        if p.schema.get("required"):
            schema["required"] = list(p.schema["required"])
        knobs = {k: v for k, v in result[p.name].items() if k != "enforcementLevel"}
        error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(schema).iter_errors(knobs))
        if error is not None:
            where = ".".join(str(x) for x in error.absolute_path) or "(config)"
            allowed = _describe_schema(error.schema) if isinstance(error.schema, dict) else ""
            raise PolicyConfigError(f"policy config: {p.name}.{where} = {error.instance!r}: {error.message}"
                                    + (f"; allowed: {allowed}" if allowed else ""))
    return result


def _number(value: Any) -> str:
    """Schema numbers come back from protobuf as floats: 36500.0 reads better as 36500."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _describe_schema(schema: Mapping[str, Any]) -> str:
    parts = []
    if "enum" in schema:
        parts.append("one of " + ", ".join(map(str, schema["enum"])))
    if "type" in schema:
        parts.append(str(schema["type"]))
    if "minimum" in schema or "maximum" in schema:
        parts.append(f"from {_number(schema.get('minimum', '-inf'))} to {_number(schema.get('maximum', 'inf'))}")
    if "pattern" in schema:
        parts.append(f"matching {schema['pattern']}")
    return " ".join(parts)


# --- wire format -----------------------------------------------------------------------------------

def _wire_leaf(value: Any) -> Any:
    """What the engine sends analyzers for a non-JSON value: unknowns as the sentinel, a resource
    reference as its URN."""
    from pulumi.output import Unknown

    if isinstance(value, Unknown):
        return UNKNOWN_STRING_VALUE
    urn = getattr(value, "urn", None)
    return str(urn) if isinstance(urn, str) else str(value)


def _wire_value(value: Any) -> Any:
    """A property value as the engine marshals it for analyzers."""
    from scripts.offline.engine import plain_json
    return plain_json(value, _wire_leaf)


def _struct(properties: Mapping[str, Any]):
    from google.protobuf import struct_pb2
    s = struct_pb2.Struct()
    # SkipInternalKeys, as the CLI marshals: "__provider" (a dynamic resource's pickled provider) etc.
    s.update({k: _wire_value(v) for k, v in properties.items() if not str(k).startswith("__")})
    return s


def _options(resource: Any):
    from pulumi.runtime.proto import analyzer_pb2
    return analyzer_pb2.AnalyzerResourceOptions(
        protect=resource.protect, ignoreChanges=list(resource.ignore_changes),
        deleteBeforeReplace=resource.delete_before_replace,
        deleteBeforeReplaceDefined=resource.delete_before_replace,
        additionalSecretOutputs=list(resource.additional_secret_outputs), aliases=[],
        customTimeouts=analyzer_pb2.AnalyzerResourceOptions.CustomTimeouts(),
        parent=resource.parent or "")


def _provider(resource: Any, by_urn: Mapping[str, Any]):
    """The provider reference `<urn>::<id>` as the analyzer's provider resource."""
    from pulumi.runtime.proto import analyzer_pb2
    if not resource.provider:
        return None
    urn = resource.provider.rsplit("::", 1)[0]
    declared = by_urn.get(urn)
    type_ = urn.split("::")[2] if urn.count("::") >= 3 else ""
    return analyzer_pb2.AnalyzerProviderResource(
        urn=urn, type=type_, name=urn.rsplit("::", 1)[-1],
        properties=_struct(declared.inputs if declared else {}))


def _is_provider(resource: Any) -> bool:
    return resource.type.startswith("pulumi:providers:")


def _import_what_start_needs() -> None:
    """Import, on the calling thread, every module PolicyGate.start() uses, grpc's lazily imported
    channel and server modules included. Two threads importing pulumi's modules at once can be handed
    a partially initialised module (CPython breaks the import-lock cycle that way), and `backupctl
    preview` runs the program, which imports pulumi, while the pack starts on a worker thread."""
    import importlib

    for name in ("grpc", "google.protobuf.empty_pb2", "google.protobuf.json_format",
                 "pulumi.runtime.proto.analyzer_pb2", "pulumi.runtime.proto.analyzer_pb2_grpc",
                 "pulumi.runtime.proto.engine_pb2", "pulumi.runtime.proto.engine_pb2_grpc", "yaml",
                 "scripts.offline.engine"):
        importlib.import_module(name)
    # grpc imports these inside grpc.server(), insecure_channel() and channel_ready_future(). They
    # are private: a grpcio that renames them must not break preview, and the test that records the
    # start thread's imports (tests/test_policies_gate.py) then names what to add here.
    for name in ("grpc._channel", "grpc._server", "grpc._utilities"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


# --- a minimal engine: the pack may log through it ------------------------------------------------

def _start_engine(sink: list[str]):
    import grpc
    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc

    class Engine(engine_pb2_grpc.EngineServicer):
        def Log(self, request, context):
            sink.append(request.message)
            return empty_pb2.Empty()

        def GetRootResource(self, request, context):
            return engine_pb2.GetRootResourceResponse(urn="")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=_GRPC_OPTIONS)
    engine_pb2_grpc.add_EngineServicer_to_server(Engine(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


# --- the pack process ------------------------------------------------------------------------------

class PolicyGate:
    """One running pack. Start once, evaluate many resource sets (tests share one per session)."""

    def __init__(self, *, stack_config: Mapping[str, Any], project: str = NAMESPACE, stack: str = "prod",
                 pack_dir: Optional[Path] = None, python: str = sys.executable, startup_timeout: float = 60.0):
        self.stack_config = dict(stack_config)
        self.project, self.stack = project, stack
        self.pack_dir = Path(pack_dir) if pack_dir is not None else default_pack_dir()
        self.python, self.startup_timeout = python, startup_timeout
        self.engine_log: list[str] = []
        self._process: Optional[subprocess.Popen] = None
        self._stderr = None
        self._engine = None
        self._channel = None
        self._stub = None
        self._policies: list[PolicyInfo] = []
        self._initial: dict[str, dict[str, Any]] = {}
        self.pack_name = self.pack_version = ""
        self._lock = threading.Lock()
        self._starting: Optional[threading.Thread] = None
        self._start_error: Optional[BaseException] = None

    def __enter__(self) -> "PolicyGate":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def policies(self) -> list[PolicyInfo]:
        return list(self._policies)

    def _env(self) -> dict[str, str]:
        from scripts.offline.engine import pulumi_config_values
        env = dict(os.environ)
        env.update({"PULUMI_CONFIG": json.dumps(pulumi_config_values(self.stack_config)),
                    "PULUMI_PROJECT": self.project, "PULUMI_STACK": self.stack, "PULUMI_DRY_RUN": "true"})
        return env

    def start(self) -> None:
        import grpc
        from pulumi.runtime.proto import analyzer_pb2_grpc

        if not (self.pack_dir / "PulumiPolicy.yaml").is_file():
            raise PolicyPackError(f"no PulumiPolicy.yaml in {self.pack_dir}")
        self._engine, engine_address = _start_engine(self.engine_log)
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [self.python, "-u", "-m", "pulumi.policy", engine_address, "."], cwd=self.pack_dir,
            env=self._env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr)
        try:
            port = self._read_port()
            self._channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=_GRPC_OPTIONS)
            try:
                grpc.channel_ready_future(self._channel).result(timeout=self.startup_timeout)
            except grpc.FutureTimeoutError:
                raise PolicyPackError(f"policy pack {self.pack_dir} printed port {port} but did not answer "
                                      f"on it within {self.startup_timeout:g}s") from None
            self._stub = analyzer_pb2_grpc.AnalyzerStub(self._channel)
            self._handshake(engine_address)
            self._load_info()
        except BaseException:
            # `with PolicyGate()` never reaches __exit__ when start fails: stop the pack here.
            self.close()
            raise

    def start_in_background(self) -> "PolicyGate":
        """Start the pack on a worker thread; evaluate() waits for it. `backupctl preview` runs the
        program on the mock engine meanwhile, so the pack's start-up costs (almost) no wall time."""
        _import_what_start_needs()

        def run() -> None:
            try:
                self.start()
            except BaseException as e:  # noqa: BLE001 re-raised by wait_started() in the caller's thread
                self._start_error = e
        self._starting = threading.Thread(target=run, name="policy-pack-start", daemon=True)
        self._starting.start()
        return self

    def wait_started(self) -> None:
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        if self._start_error is not None:
            error, self._start_error = self._start_error, None
            raise error

    def _read_port(self) -> int:
        """The first stdout line is the port (as the CLI's plugin host reads it)."""
        assert self._process and self._process.stdout
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(self._process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.startup_timeout)
        text = line[0].decode().strip() if line else ""
        if not text.isdigit():
            try:
                code = self._process.wait(timeout=5)  # let a dying pack finish writing its error
            except subprocess.TimeoutExpired:
                code = None
            reason = self._stderr_tail() or (f"exited with code {code}" if code is not None
                                             else f"no port printed within {self.startup_timeout:g}s")
            self.close()
            raise PolicyPackError(f"policy pack {self.pack_dir} did not start: {reason}")
        return int(text)

    def _stderr_tail(self) -> str:
        if not self._stderr:
            return ""
        self._stderr.seek(0)
        lines = [line for line in self._stderr.read().decode(errors="replace").splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def _call(self, method: str, request, *, optional: bool = False):
        import grpc
        try:
            return getattr(self._stub, method)(request, timeout=120)
        except grpc.RpcError as e:
            if optional and e.code() == grpc.StatusCode.UNIMPLEMENTED:
                return None  # older packs: the CLI falls back the same way
            raise PolicyPackError(f"policy pack {method} failed: {e.details() or e.code()}") from None

    def _handshake(self, engine_address: str) -> None:
        from pulumi.runtime.proto import analyzer_pb2

        from scripts.offline.engine import pulumi_config_values
        directory = str(self.pack_dir)
        self._call("Handshake", analyzer_pb2.AnalyzerHandshakeRequest(
            engine_address=engine_address, root_directory=directory, program_directory=directory), optional=True)
        self._call("ConfigureStack", analyzer_pb2.AnalyzerStackConfigureRequest(
            stack=self.stack, project=self.project, organization="organization", dry_run=True,
            config=pulumi_config_values(self.stack_config), tags={}), optional=True)

    def _load_info(self) -> None:
        from google.protobuf import empty_pb2, json_format
        from pulumi.runtime.proto import analyzer_pb2

        info = self._call("GetAnalyzerInfo", empty_pb2.Empty())
        levels = {v: k.lower() for k, v in analyzer_pb2.EnforcementLevel.items()}
        self.pack_name, self.pack_version = info.name, self._pack_file_version() or info.version
        self._policies = [PolicyInfo(
            name=p.name, description=p.description, enforcement_level=levels[p.enforcementLevel],
            kind="stack" if p.policy_type == analyzer_pb2.POLICY_TYPE_STACK else "resource",
            schema={"properties": json_format.MessageToDict(p.configSchema.properties),
                    "required": list(p.configSchema.required)}) for p in info.policies]
        self._initial = {}
        for name, config in info.initialConfig.items():
            entry = json_format.MessageToDict(config.properties)
            entry["enforcementLevel"] = levels[config.enforcementLevel]
            self._initial[name] = entry

    def _pack_file_version(self) -> str:
        """The CLI prefers PulumiPolicy.yaml's version over the one the pack reports."""
        import yaml
        try:
            doc = yaml.safe_load((self.pack_dir / "PulumiPolicy.yaml").read_text()) or {}
        except (OSError, yaml.YAMLError):
            return ""
        return str(doc.get("version") or "")

    def reconcile(self, policy_config: Optional[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
        return reconcile_policy_config(self._policies, self._initial, policy_config or {})

    def evaluate(self, resources: Sequence[Any],
                 policy_config: Optional[Mapping[str, Mapping[str, Any]]] = None) -> GateResult:
        """Configure the pack, analyze each resource, then the whole stack; return every diagnostic."""
        from google.protobuf import json_format
        from pulumi.runtime.proto import analyzer_pb2

        self.wait_started()
        if self._stub is None:
            raise PolicyPackError("policy gate not started")
        config = self.reconcile(policy_config)
        levels = {k.lower(): v for k, v in analyzer_pb2.EnforcementLevel.items()}
        request = analyzer_pb2.ConfigureAnalyzerRequest()
        for name, entry in config.items():
            knobs = {k: v for k, v in entry.items() if k != "enforcementLevel"}
            policy_config_message = request.policyConfig[name]
            policy_config_message.enforcementLevel = levels[entry["enforcementLevel"]]
            json_format.ParseDict(knobs, policy_config_message.properties)

        by_urn = {r.urn: r for r in resources}
        diagnostics: list[tuple[Any, str]] = []
        with self._lock:  # Configure then Analyze must not interleave with another evaluation
            self._call("Configure", request)
            for r in resources:
                if _is_provider(r):
                    continue
                response = self._call("Analyze", analyzer_pb2.AnalyzeRequest(
                    type=r.type, urn=r.urn, name=r.name, properties=_struct(r.inputs),
                    options=_options(r), provider=_provider(r, by_urn)))
                diagnostics += [(d, d.urn or r.urn) for d in response.diagnostics]
            stack = analyzer_pb2.AnalyzeStackRequest(resources=[analyzer_pb2.AnalyzerResource(
                type=r.type, urn=r.urn, name=r.name, properties=_struct(r.outputs or r.inputs),
                options=_options(r), provider=_provider(r, by_urn), parent=r.parent or "",
                dependencies=list(r.dependencies),
                propertyDependencies={k: analyzer_pb2.AnalyzerPropertyDependencies(urns=list(v))
                                      for k, v in r.property_dependencies.items() if v})
                for r in resources])
            response = self._call("AnalyzeStack", stack)
            diagnostics += [(d, d.urn) for d in response.diagnostics]

        level_names = {v: k.lower() for k, v in analyzer_pb2.EnforcementLevel.items()}
        severities = {v: k.replace("POLICY_SEVERITY_", "").lower() for k, v in analyzer_pb2.PolicySeverity.items()}
        violations = []
        for d, urn in diagnostics:
            message = d.message
            if d.description and message.startswith(d.description):
                message = message[len(d.description):].lstrip("\n")  # the SDK prefixes the description
            violations.append(Violation(policy=d.policyName, urn=urn, message=message or d.description,
                                        level=level_names[d.enforcementLevel], description=d.description,
                                        severity=severities.get(d.severity, "")))
        # The engine registers resources in a different order on each run: sort, so that the report
        # and preview's --json list the same violations in the same order every time.
        violations.sort(key=lambda v: (v.policy, v.urn, v.message))
        return GateResult(pack=self.pack_name, version=self.pack_version, violations=violations,
                          analyzed=sum(not _is_provider(r) for r in resources))

    def close(self) -> None:
        if self._starting is not None:
            self._starting.join()  # never tear down under a start in progress
            self._starting = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            if self._process.stdout:
                self._process.stdout.close()
            self._process = None
        if self._engine is not None:
            self._engine.stop(0)
            self._engine = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def run_policy_gate(resources: Sequence[Any], stack_config: Mapping[str, Any], *, stack: str = "prod",
                    policy_config: Optional[Mapping[str, Mapping[str, Any]]] = None,
                    pack_dir: Optional[Path] = None) -> GateResult:
    """Start the pack, judge `resources`, stop the pack."""
    with PolicyGate(stack_config=stack_config, stack=stack, pack_dir=pack_dir) as gate:
        return gate.evaluate(resources, policy_config)


# --- output ----------------------------------------------------------------------------------------

def format_violations(result: GateResult) -> str:
    """Violations grouped by policy, each with the resource URN, as `pulumi preview` lists them."""
    if not result.violations:
        return f"Policies:\n    ✅ {result.pack}@v{result.version}: no violations ({result.analyzed} resources)"
    mark = "❌" if result.mandatory else "⚠️"
    lines = ["Policies:", f"    {mark} {result.pack}@v{result.version} (local: policies)"]
    grouped: dict[tuple[str, str], list[Violation]] = {}
    for v in result.violations:
        grouped.setdefault((v.policy, v.level), []).append(v)
    for (policy, level), found in sorted(grouped.items(), key=lambda item: (item[0][1] != "mandatory", item[0][0])):
        lines.append(f"        - [{level}]  {policy}  ({len(found)})")
        lines.append(f"          {found[0].description}")
        for v in found:
            lines.append(f"          {v.urn or '(stack)'}")
            lines.append(f"              {v.message}")
    counts = f"{len(result.mandatory)} mandatory, {len(result.violations) - len(result.mandatory)} advisory"
    lines.append(f"    {len(result.violations)} violation(s): {counts}")
    return "\n".join(lines)
