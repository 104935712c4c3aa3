"""DumpDocument: the nightly database dump and P1 file archive, run on the instance by SSM.

Seed rules: zero data loss (a consistent logical dump of the financial/CRM database every night,
off the instance, independent of EBS) and least privilege (the instance role may only add objects
under two prefixes, use the bucket key and read one password parameter).

The SSM Command document embeds scripts/agent/quickport_dump.py verbatim, so what runs on the instance is
exactly the reviewed, tested file of this commit; nothing has to be installed there beforehand.
"""
from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.config import DEFAULT_FILES, REPO_ROOT, BinlogConfig, DumpConfig, StackConfig
from components.naming import RESTORES_PREFIX
from components.signals import METRICS_NAMESPACE
from components.tags import STRATEGY_TAGS

TYPE_TOKEN = "quickport:backup:DumpDocument"
DUMP_SCRIPT = REPO_ROOT / "scripts" / "agent" / "quickport_dump.py"
HEREDOC_END = "QUICKPORT_DUMP_PY_EOF"
# Root-only tmpfs: the script is embedded once (AWS caps a document at 64 KB) and the second step
# runs the copy the first step wrote, after checking its SHA-256 against the one in the document.
INSTALL_DIR = "/run/quickport-backup"
# AWS's quota for an SSM document's content.
MAX_DOCUMENT_BYTES = 64 * 1024

# SSM pastes parameter values into the shell text, so these patterns are the injection guard: none
# admits a quote, space, ';', '$', '`', '|', '&' or newline. Plain groups only (SSM's regex dialect).
PARAMETER_PATTERNS = {
    "Database": r"^[A-Za-z0-9_]{1,64}$",
    "Bucket": r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
    "Prefix": r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$",
    "FilesPrefix": r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$",
    "PasswordParameter": r"^/?[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$",
    "User": r"^[A-Za-z0-9_]{1,80}$",
    "Compression": r"^(zstd|gzip)$",
    "Region": r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$",
    "Stack": r"^[A-Za-z0-9_.-]{1,100}$",
}
PARAMETER_DESCRIPTIONS = {
    "Database": "MariaDB database to dump",
    "Bucket": "S3 bucket that receives the dump and the file archive",
    "Prefix": "key prefix of database dumps (no leading or trailing '/')",
    "FilesPrefix": "key prefix of P1 file archives (no leading or trailing '/')",
    "PasswordParameter": "SSM SecureString parameter holding the dump user's password",
    "User": "MariaDB user with read-only dump privileges",
    "Compression": "zstd or gzip",
    "Region": "AWS region of the bucket and the password parameter",
    "Stack": f"Stack dimension of the dump's CloudWatch metrics (namespace {METRICS_NAMESPACE})",
}


class DumpDocumentError(pulumi.RunError):
    """The dump script cannot be embedded safely; str() names the file and the reason.

    A RunError, so `pulumi preview` prints the one line without a traceback and `backupctl preview`
    exits 2 with it."""


@dataclass(frozen=True)
class DumpDocumentArgs:
    instance_id: str                           # the instance the association runs on
    instance_role_name: str                    # its IAM role; gets the dump permissions inline
    region: str                                # bucket, parameter and instance region
    bucket_name: pulumi.Input[str]             # DumpBucket.bucket_name
    bucket_arn: pulumi.Input[str]              # DumpBucket.bucket_arn
    key_arn: pulumi.Input[str]                 # DumpBucket.key_arn (SSE-KMS bucket key)
    dumps: DumpConfig = field(default_factory=DumpConfig)  # database, prefixes, schedule, user ...
    files: tuple[str, ...] = DEFAULT_FILES     # P1 paths archived by the second step
    document_name: str = "quickport-backup-dump"  # SSM document name
    script_path: Path = DUMP_SCRIPT            # embedded verbatim
    timeout_seconds: int = 7200                # per step; a large dump must not be cut at SSM's 1 h default
    stack: str = "prod"                        # Stack dimension of the dump metrics the alarms watch
    # What must exist before the first nightly run, e.g. the DumpBucket component (its encryption,
    # policy and versioning); the association waits for it.
    association_depends_on: Sequence[pulumi.Resource] = ()

    @classmethod
    def from_config(cls, cfg: StackConfig, bucket_name: pulumi.Input[str], bucket_arn: pulumi.Input[str],
                    key_arn: pulumi.Input[str],
                    association_depends_on: Sequence[pulumi.Resource] = ()) -> "DumpDocumentArgs":
        return cls(instance_id=cfg.instance_id, instance_role_name=cfg.instance_role_name,
                   region=cfg.region, bucket_name=bucket_name, bucket_arn=bucket_arn, key_arn=key_arn,
                   dumps=cfg.dumps, files=cfg.files, document_name=f"quickport-{cfg.stack}-backup-dump",
                   stack=cfg.stack, association_depends_on=tuple(association_depends_on))


def read_dump_script(path: Path, heredoc_end: str = HEREDOC_END, what: str = "dump script") -> str:
    """The script's text, refused if it would not survive the heredoc or SSM's {{ }} substitution."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise DumpDocumentError(f"{what} {path} does not exist; the SSM document embeds it") from None
    if heredoc_end in text.splitlines():
        raise DumpDocumentError(f"{what} {path} contains the line {heredoc_end}, which ends the heredoc")
    if "{{" in text:
        raise DumpDocumentError(f"{what} {path} contains '{{{{', which SSM would treat as a parameter")
    return text


def script_lines(script: str) -> list[str]:
    """The heredoc body lines; the heredoc writes them back with a newline after each."""
    body = script[:-1] if script.endswith("\n") else script
    return body.split("\n")


def written_script(script: str) -> bytes:
    """The exact bytes the heredoc writes on the instance (the script plus a final newline)."""
    return ("\n".join(script_lines(script)) + "\n").encode()


def install_and_run_commands(script: str, invocation: str, install_dir: str = INSTALL_DIR,
                             name: str = "quickport_dump.py", heredoc_end: str = HEREDOC_END,
                             dir_mode: str = "0700") -> list[str]:
    """Shell lines that write `script` as `name` into `install_dir` (root's private tmpfs dir by default)
    and run `invocation` on it."""
    return [
        "set -eu",
        "umask 077",
        f'dir="{install_dir}"',
        'mkdir -p "$dir"',
        f'chmod {dir_mode} "$dir"',
        f'tmp="$(mktemp "$dir/.{name}.XXXXXXXX")"',
        # Quoted delimiter: the shell expands nothing inside, so the file is the script byte for byte.
        f"cat > \"$tmp\" <<'{heredoc_end}'",
        *script_lines(script),
        heredoc_end,
        *([] if dir_mode == "0700" else ['chmod 0644 "$tmp"']),
        f'mv -f "$tmp" "$dir/{name}"',
        invocation,
    ]


def verify_and_run_commands(script: str, invocation: str, install_dir: str = INSTALL_DIR) -> list[str]:
    """Shell lines that run `invocation` only if the installed script is this document's, by SHA-256."""
    digest = hashlib.sha256(written_script(script)).hexdigest()
    return [
        "set -eu",
        "umask 077",
        f'dir="{install_dir}"',
        f"if ! printf '%s  %s\\n' '{digest}' \"$dir/quickport_dump.py\" | sha256sum -c --status; then",
        '  echo "quickport_dump.py in $dir is missing or not the one this document installs" >&2',
        "  exit 1",
        "fi",
        invocation,
    ]


def document_content(script: str, files: tuple[str, ...], dumps: DumpConfig, region: str,
                     timeout_seconds: int = 7200, stack: str = "prod") -> dict:
    """The SSM Command document (schema 2.2) as a dict."""
    py = 'python3 "$dir/quickport_dump.py"'
    db_invocation = (
        f"{py} db --database '{{{{ Database }}}}' --bucket '{{{{ Bucket }}}}' --prefix '{{{{ Prefix }}}}'"
        " --password-parameter '{{ PasswordParameter }}' --user '{{ User }}'"
        " --compression '{{ Compression }}' --region '{{ Region }}' --metrics-stack '{{ Stack }}'"
        f" --priority {shlex.quote(dumps.priority)} --verify {shlex.quote(dumps.verify)}")
    # Paths come from the validated stack config (absolute, no spaces); quoted all the same.
    paths = " ".join(f"--path {shlex.quote(p)}" for p in files)
    files_invocation = (f"{py} files --bucket '{{{{ Bucket }}}}' --prefix '{{{{ FilesPrefix }}}}' {paths}"
                        " --compression '{{ Compression }}' --region '{{ Region }}'")
    defaults = {"Database": dumps.database, "Bucket": dumps.bucket_name, "Prefix": dumps.prefix,
                "FilesPrefix": dumps.files_prefix, "PasswordParameter": dumps.password_parameter,
                "User": dumps.user, "Compression": dumps.compression, "Region": region, "Stack": stack}
    parameters: dict[str, dict[str, Any]] = {}
    for name, pattern in PARAMETER_PATTERNS.items():
        parameters[name] = {"type": "String", "description": PARAMETER_DESCRIPTIONS[name],
                            "default": defaults[name], "allowedPattern": pattern}
    parameters["Compression"]["allowedValues"] = ["zstd", "gzip"]

    def step(name: str, commands: list[str]) -> dict:
        return {
            "action": "aws:runShellScript",
            "name": name,
            "precondition": {"StringEquals": ["platformType", "Linux"]},
            "inputs": {"timeoutSeconds": str(timeout_seconds), "runCommand": commands},
        }

    return {
        "schemaVersion": "2.2",
        "description": "QuickPort nightly MariaDB dump and P1 file archive to S3 (quickport-backup)",
        "parameters": parameters,
        # No onFailure: the files step runs even when the dump failed; the command fails if either does.
        "mainSteps": [step("dumpDatabase", install_and_run_commands(script, db_invocation)),
                      step("archiveFiles", verify_and_run_commands(script, files_invocation))],
    }


def parameter_arn_suffix(name: str) -> str:
    """The ARN's resource part: 'parameter/a/b' for both '/a/b' and 'a/b'."""
    return "parameter/" + name.lstrip("/")


def parameter_arn(region: str, name: str) -> pulumi.Output[str]:
    """The SSM parameter's ARN in this account and partition."""
    identity = aws.get_caller_identity_output()
    partition = aws.get_partition_output()
    return pulumi.Output.concat("arn:", partition.partition, ":ssm:", region, ":", identity.account_id, ":",
                                parameter_arn_suffix(name))


def command_document(resource_name: str, document_name: str, content: dict, script_path: Path,
                     opts: pulumi.ResourceOptions) -> aws.ssm.Document:
    """An SSM Command document (JSON) for the instance, refused above AWS's size quota."""
    # Compact JSON: with one array element per script line, indentation alone cost ~7 KB of the quota.
    text = json.dumps(content, separators=(",", ":"))
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        raise DumpDocumentError(f"SSM document {document_name} would be {len(text.encode())} bytes; AWS allows "
                                f"{MAX_DOCUMENT_BYTES}. Shrink {script_path}")
    return aws.ssm.Document(resource_name, name=document_name, document_type="Command", document_format="JSON",
                            content=text, target_type="/AWS::EC2::Instance", tags=STRATEGY_TAGS, opts=opts)


def instance_policy_document(bucket_arn: pulumi.Input[str], key_arn: pulumi.Input[str], dumps: DumpConfig,
                             region: str) -> pulumi.Output[str]:
    """Exactly what the dump and restore hand-offs need: add objects under three prefixes, the bucket
    key, one parameter, metrics in one namespace."""
    password_arn = parameter_arn(region, dumps.password_parameter)
    return pulumi.Output.json_dumps({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WriteDumpsAndFiles",
                "Effect": "Allow",
                # AbortMultipartUpload lets a failed multipart dump clean up after itself.
                "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
                "Resource": [pulumi.Output.concat(bucket_arn, "/", dumps.prefix, "/*"),
                             pulumi.Output.concat(bucket_arn, "/", dumps.files_prefix, "/*")],
            },
            {
                # `backupctl restore-files` runs its helper with this instance profile by default; the
                # SSM agent uploads the (encrypted) command output under restores/ and first reads the
                # bucket's default encryption.
                "Sid": "HandRestoresBack",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": pulumi.Output.concat(bucket_arn, f"/{RESTORES_PREFIX}/*"),
            },
            {
                "Sid": "ReadBucketEncryption",
                "Effect": "Allow",
                "Action": "s3:GetEncryptionConfiguration",
                "Resource": bucket_arn,
            },
            {
                "Sid": "UseBucketKey",
                "Effect": "Allow",
                # Decrypt: S3 needs it to assemble a multipart upload encrypted with SSE-KMS.
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": key_arn,
            },
            {
                "Sid": "ReadDumpPassword",
                "Effect": "Allow",
                "Action": "ssm:GetParameter",
                "Resource": password_arn,
            },
            {
                # PutMetricData has no resource-level permissions ("*" is required); the namespace
                # condition key keeps the instance from writing into any other namespace.
                "Sid": "PublishDumpMetrics",
                "Effect": "Allow",
                "Action": "cloudwatch:PutMetricData",
                "Resource": "*",
                "Condition": {"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
            },
        ],
    })


class DumpDocument(pulumi.ComponentResource):
    """SSM Command document + State Manager association on the instance + the instance role's policy."""

    def __init__(self, name: str, args: DumpDocumentArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        script = read_dump_script(args.script_path)
        content = document_content(script, args.files, args.dumps, args.region, args.timeout_seconds, args.stack)
        self.document = command_document(f"{name}-document", args.document_name, content, args.script_path, child)

        self.instance_policy = aws.iam.RolePolicy(
            f"{name}-instance-policy", name=f"{args.document_name}-writer", role=args.instance_role_name,
            policy=instance_policy_document(args.bucket_arn, args.key_arn, args.dumps, args.region),
            opts=child)

        d = args.dumps
        self.association = aws.ssm.Association(
            f"{name}-association",
            association_name=f"{args.document_name}-nightly",
            name=self.document.name,
            # A content change makes a new document version; $LATEST runs it from the next night on
            # without depending on the provider moving the default version.
            document_version="$LATEST",
            targets=[aws.ssm.AssociationTargetArgs(key="InstanceIds", values=[args.instance_id])],
            schedule_expression=d.schedule,
            # Never at deploy time: a dump during business hours loads the production database.
            apply_only_at_cron_interval=True,
            compliance_severity="HIGH",
            max_errors="0",
            parameters={"Database": d.database, "Bucket": args.bucket_name, "Prefix": d.prefix,
                        "FilesPrefix": d.files_prefix, "PasswordParameter": d.password_parameter,
                        "User": d.user, "Compression": d.compression, "Region": args.region,
                        "Stack": args.stack},
            opts=pulumi.ResourceOptions(parent=self,
                                        depends_on=[self.instance_policy, *args.association_depends_on]))

        self.document_name = self.document.name
        self.association_id = self.association.association_id
        self.register_outputs({"documentName": self.document_name, "associationId": self.association_id})


# --- the binlog shipper's service (point-in-time recovery, docs/binlog-shipping.md) ----------------

BINLOG_TYPE_TOKEN = "quickport:backup:BinlogShipperDocument"
BINLOG_SCRIPT = REPO_ROOT / "scripts" / "agent" / "binlog_ship.py"
BINLOG_HEREDOC_END = "QUICKPORT_BINLOG_PY_EOF"
UNIT_HEREDOC_END = "QUICKPORT_BINLOG_UNIT_EOF"
SERVICE = "quickport-binlog"                  # the unit and its system user
# Root-owned and world-readable (the service user runs it, nobody but root changes it); not a tmpfs:
# the service must find it again after a reboot.
BINLOG_INSTALL_DIR = "/usr/local/lib/quickport-binlog"
BINLOG_STATE_DIR = "/var/lib/quickport-binlog"
# The drop-in --check writes with binlog.applyServerSettings, by distribution (AL2023, then Debian).
DROP_IN_DIRS = ("/etc/my.cnf.d", "/etc/mysql/mariadb.conf.d")
DROP_IN_NAME = "90-quickport-binlog.cnf"

BINLOG_PARAMETER_PATTERNS = {
    "Bucket": PARAMETER_PATTERNS["Bucket"],
    "Prefix": PARAMETER_PATTERNS["Prefix"],
    "PasswordParameter": PARAMETER_PATTERNS["PasswordParameter"],
    "User": PARAMETER_PATTERNS["User"],
    "Region": PARAMETER_PATTERNS["Region"],
    "Stack": PARAMETER_PATTERNS["Stack"],
    "Database": PARAMETER_PATTERNS["Database"],
    "IntervalSeconds": r"^([5-9]|[1-9][0-9]|[12][0-9][0-9]|300)$",
    "SpoolMegabytes": r"^[1-9][0-9]{1,5}$",
    "ApplySettings": r"^(true|false)$",
    "ScriptSha256": r"^[0-9a-f]{64}$",
}
BINLOG_PARAMETER_DESCRIPTIONS = {
    "Bucket": "S3 bucket that receives the binlog segments (the dump bucket)",
    "Prefix": "key prefix of the segments (binlog.prefix)",
    "PasswordParameter": "SSM SecureString parameter holding the shipper user's password",
    "User": "MariaDB user with REPLICATION SLAVE, BINLOG MONITOR and RELOAD",
    "Region": "AWS region of the bucket and the password parameter",
    "Stack": f"Stack dimension of the shipper's CloudWatch metrics (namespace {METRICS_NAMESPACE})",
    "Database": "Database dimension of the shipper's metrics (dumps.database)",
    "IntervalSeconds": "seconds between shipping intervals, 5..300 (binlog.intervalSeconds)",
    "SpoolMegabytes": "local spool bound while S3 is unreachable (binlog.spoolMegabytes)",
    "ApplySettings": "true: --check writes the missing server settings as a drop-in (never restarts MariaDB)",
    "ScriptSha256": "SHA-256 of the embedded shipper; changes with it, so the association re-applies",
}


@dataclass(frozen=True)
class BinlogShipperDocumentArgs:
    instance_id: str                           # the instance the service runs on
    instance_role_name: str                    # its IAM role; gets the shipper's permissions inline
    region: str
    bucket_name: pulumi.Input[str]             # DumpBucket.bucket_name
    bucket_arn: pulumi.Input[str]              # DumpBucket.bucket_arn
    key_arn: pulumi.Input[str]                 # DumpBucket.key_arn (SSE-KMS bucket key)
    binlog: BinlogConfig = field(default_factory=BinlogConfig)  # prefix, interval, spool, user, password
    database: str = "quickport_crm_laravel"    # Database dimension of the metrics (dumps.database)
    document_name: str = "quickport-backup-binlog"
    script_path: Path = BINLOG_SCRIPT          # embedded verbatim
    stack: str = "prod"
    association_depends_on: Sequence[pulumi.Resource] = ()

    @classmethod
    def from_config(cls, cfg: StackConfig, bucket_name: pulumi.Input[str], bucket_arn: pulumi.Input[str],
                    key_arn: pulumi.Input[str],
                    association_depends_on: Sequence[pulumi.Resource] = ()) -> "BinlogShipperDocumentArgs":
        return cls(instance_id=cfg.instance_id, instance_role_name=cfg.instance_role_name, region=cfg.region,
                   bucket_name=bucket_name, bucket_arn=bucket_arn, key_arn=key_arn, binlog=cfg.binlog,
                   database=cfg.dumps.database, document_name=f"quickport-{cfg.stack}-binlog-shipper",
                   stack=cfg.stack, association_depends_on=tuple(association_depends_on))


def service_unit() -> str:
    """The systemd unit; {{ }} are the document's parameters, filled in by SSM before the shell runs."""
    exec_start = (
        f"/usr/bin/python3 {BINLOG_INSTALL_DIR}/binlog_ship.py --follow --bucket {{{{ Bucket }}}}"
        " --prefix {{ Prefix }} --password-parameter {{ PasswordParameter }} --user {{ User }}"
        " --region {{ Region }} --interval {{ IntervalSeconds }}"
        f" --state-dir {BINLOG_STATE_DIR} --spool-megabytes {{{{ SpoolMegabytes }}}}"
        " --metrics-stack {{ Stack }} --database {{ Database }}")
    return "\n".join([
        "[Unit]",
        "Description=QuickPort MariaDB binlog shipper (quickport-backup, docs/binlog-shipping.md)",
        "Wants=network-online.target",
        "After=network-online.target mariadb.service",
        "",
        "[Service]",
        "Type=simple",
        f"User={SERVICE}",
        f"Group={SERVICE}",
        f"ExecStart={exec_start}",
        # Supervised: a crash, a kill or a lost connection is followed by a restart that resumes exactly.
        "Restart=always",
        "RestartSec=5",
        # SIGTERM to the shipper only: it makes its final ship (its mariadb-binlog children must live).
        "KillMode=mixed",
        "TimeoutStopSec=300",
        f"StateDirectory={SERVICE}",
        "StateDirectoryMode=0700",
        f"ReadWritePaths={BINLOG_STATE_DIR}",
        "UMask=0077",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "CapabilityBoundingSet=",
        "SystemCallArchitectures=native",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]) + "\n"


def binlog_document_content(script: str) -> dict:
    """The SSM Command document (schema 2.2): install the shipper, check the server, enable the service."""
    py = f"/usr/bin/python3 {BINLOG_INSTALL_DIR}/binlog_ship.py"
    drop_in = " ".join(DROP_IN_DIRS)
    check = [
        # The check runs as root: with ApplySettings it writes the drop-in into the server's config dir.
        "apply=''",
        "if [ '{{ ApplySettings }}' = 'true' ]; then",
        f"  for d in {drop_in}; do",
        f'    if [ -d "$d" ]; then apply="--apply-settings $d/{DROP_IN_NAME}"; break; fi',
        "  done",
        '  if [ -z "$apply" ]; then echo "no MariaDB drop-in directory found' f' ({drop_in})" >&2; exit 1; fi',
        "fi",
        "# Fails with the exact setting or grant to change; the service is not enabled until it passes.",
        f"{py} --check --password-parameter '{{{{ PasswordParameter }}}}' --user '{{{{ User }}}}'"
        " --region '{{ Region }}' --interval '{{ IntervalSeconds }}' $apply",
    ]
    service = [
        f"id -u {SERVICE} >/dev/null 2>&1 || useradd --system --no-create-home --home-dir {BINLOG_STATE_DIR}"
        f" --shell /sbin/nologin {SERVICE}",
        f'unit="/etc/systemd/system/{SERVICE}.service"',
        'tmp="$(mktemp "$unit.XXXXXXXX")"',
        f"cat > \"$tmp\" <<'{UNIT_HEREDOC_END}'",
        *service_unit().rstrip("\n").split("\n"),
        UNIT_HEREDOC_END,
        'chmod 0644 "$tmp"',
        'mv -f "$tmp" "$unit"',
        "systemctl daemon-reload",
        f"systemctl enable {SERVICE}",
        # restart, not start: a changed shipper or unit takes over (the old one ships what it has first).
        f"systemctl restart {SERVICE}",
        f"systemctl is-active --quiet {SERVICE}",
        f'echo "{SERVICE} is running (journalctl -u {SERVICE})"',
    ]
    parameters: dict[str, dict[str, Any]] = {
        name: {"type": "String", "description": BINLOG_PARAMETER_DESCRIPTIONS[name], "allowedPattern": pattern}
        for name, pattern in BINLOG_PARAMETER_PATTERNS.items()}
    parameters["ApplySettings"]["allowedValues"] = ["true", "false"]
    commands = install_and_run_commands(script, check[0], install_dir=BINLOG_INSTALL_DIR, name="binlog_ship.py",
                                        heredoc_end=BINLOG_HEREDOC_END, dir_mode="0755") + check[1:] + service
    return {
        "schemaVersion": "2.2",
        "description": "QuickPort MariaDB binlog shipper: install, check the server, enable the service "
                       "(quickport-backup, docs/binlog-shipping.md)",
        "parameters": parameters,
        "mainSteps": [{"action": "aws:runShellScript", "name": "installBinlogShipper",
                       "precondition": {"StringEquals": ["platformType", "Linux"]},
                       "inputs": {"timeoutSeconds": "600", "runCommand": commands}}],
    }


def binlog_policy_document(bucket_arn: pulumi.Input[str], key_arn: pulumi.Input[str], binlog: BinlogConfig,
                           region: str) -> pulumi.Output[str]:
    """What the shipper adds to the instance role: objects under the binlog prefix only, the bucket key,
    its own password parameter (metrics: the dump policy's namespace-bound statement)."""
    password_arn = parameter_arn(region, binlog.password_parameter)
    return pulumi.Output.json_dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "WriteBinlogSegments", "Effect": "Allow", "Action": "s3:PutObject",
             "Resource": pulumi.Output.concat(bucket_arn, "/", binlog.prefix, "/*")},
            {"Sid": "UseBucketKey", "Effect": "Allow", "Action": "kms:GenerateDataKey", "Resource": key_arn},
            {"Sid": "ReadBinlogPassword", "Effect": "Allow", "Action": "ssm:GetParameter",
             "Resource": password_arn},
        ],
    })


class BinlogShipperDocument(pulumi.ComponentResource):
    """SSM document that installs and enables the quickport-binlog service, an association that applies
    it once (and again whenever the shipper or a parameter changes), and the role policy it needs."""

    def __init__(self, name: str, args: BinlogShipperDocumentArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(BINLOG_TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        script = read_dump_script(args.script_path, BINLOG_HEREDOC_END, "binlog shipper")
        if UNIT_HEREDOC_END in script.splitlines():
            raise DumpDocumentError(f"binlog shipper {args.script_path} contains the line {UNIT_HEREDOC_END}")
        self.document = command_document(f"{name}-document", args.document_name, binlog_document_content(script),
                                         args.script_path, child)
        self.instance_policy = aws.iam.RolePolicy(
            f"{name}-instance-policy", name=f"{args.document_name}-writer", role=args.instance_role_name,
            policy=binlog_policy_document(args.bucket_arn, args.key_arn, args.binlog, args.region), opts=child)
        b = args.binlog
        self.association = aws.ssm.Association(
            f"{name}-association",
            association_name=f"{args.document_name}-install",
            name=self.document.name,
            document_version="$LATEST",
            targets=[aws.ssm.AssociationTargetArgs(key="InstanceIds", values=[args.instance_id])],
            # No schedule: it runs when created and whenever it changes; ScriptSha256 changes with the
            # shipper, so a new shipper is installed by `pulumi up` (systemd keeps it running meanwhile).
            compliance_severity="HIGH",
            max_errors="0",
            parameters={"Bucket": args.bucket_name, "Prefix": b.prefix, "PasswordParameter": b.password_parameter,
                        "User": b.user, "Region": args.region, "Stack": args.stack, "Database": args.database,
                        "IntervalSeconds": str(b.interval_seconds), "SpoolMegabytes": str(b.spool_megabytes),
                        "ApplySettings": "true" if b.apply_server_settings else "false",
                        "ScriptSha256": hashlib.sha256(written_script(script)).hexdigest()},
            opts=pulumi.ResourceOptions(parent=self,
                                        depends_on=[self.instance_policy, *args.association_depends_on]))
        self.document_name = self.document.name
        self.association_id = self.association.association_id
        self.register_outputs({"documentName": self.document_name, "associationId": self.association_id})
