"""S3: the dump bucket's objects (dumps, manifests, archives, the SSM agent's command output) and the
bucket settings audit reads."""
from __future__ import annotations

import datetime as dt
import email.utils
import json
import re
from typing import Any, Callable, Optional

from scripts.aws.errors import describe
from scripts.errors import CommandError


def read_json_object(s3, bucket: str, key: str) -> Optional[dict[str, Any]]:
    """The JSON document at the key, or None when the key does not exist (ValueError if not JSON)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body)


def read_json(s3, bucket: str, key: str) -> dict[str, Any]:
    """The JSON object at the key; CommandError (one line) when it is missing, unreadable or not JSON."""
    try:
        document = read_json_object(s3, bucket, key)
    except ValueError:
        raise CommandError(f"s3://{bucket}/{key} is not JSON") from None
    except Exception as e:  # botocore errors: one line naming the object
        raise CommandError(f"reading s3://{bucket}/{key}: {describe(e)}") from None
    if document is None:
        raise CommandError(f"reading s3://{bucket}/{key}: NoSuchKey: The specified key does not exist.")
    if not isinstance(document, dict):
        raise CommandError(f"s3://{bucket}/{key} is not a JSON object")
    return document


def newest_object(s3, bucket: str, prefix: str, suffix: str = "") -> Optional[dict[str, Any]]:
    """The most recently modified object under the prefix whose key ends with the suffix."""
    newest = None
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(suffix) and (newest is None or obj["LastModified"] > newest["LastModified"]):
                newest = obj
    return newest


def child_prefixes(s3, bucket: str, prefix: str) -> list[str]:
    """The names one level below `prefix/` (e.g. the hosts under the files prefix)."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/", Delimiter="/")
    return [cp["Prefix"][len(prefix) + 1:].rstrip("/") for page in pages for cp in page.get("CommonPrefixes", [])]


def keys_under(s3, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


def command_output_key(s3, bucket: str, prefix: str, stream: str = "stdout") -> Optional[str]:
    """The stdout (or stderr) object the SSM agent wrote under `prefix` (layout
    <prefix>/<command-id>/<instance-id>/awsrunShellScript/0.awsrunShellScript/stdout)."""
    found = [k for k in keys_under(s3, bucket, prefix) if k.endswith("/" + stream)]
    return found[0] if found else None


def last_line(s3, bucket: str, key: str) -> str:
    """The last non-empty line of a (small) text object, e.g. the script's stderr."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", errors="replace")
    lines = [line for line in body.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# s3transfer's default of 10 concurrent 8 MiB ranges took the drill's process to ~130 MiB on a 250 MB
# dump; 4 keep it under 100 MiB and still fill a network link.
DOWNLOAD_CONCURRENCY = 4


def download(s3, bucket: str, key: str, path: str, on_bytes: Optional[Callable[[int], None]] = None) -> None:
    """s3transfer: ranged, retried, multi-threaded; `on_bytes(n)` as parts arrive."""
    from boto3.s3.transfer import TransferConfig
    s3.download_file(bucket, key, path, Callback=on_bytes, Config=TransferConfig(max_concurrency=DOWNLOAD_CONCURRENCY))


def delete_prefix(s3, bucket: str, prefix: str) -> int:
    """Delete the current objects under `prefix` (the run's own output). Only delete markers are
    written: the dump bucket's policy denies DeleteObjectVersion to everyone, so the noncurrent
    versions stay until a lifecycle rule expires them; they hold only ciphertext whose key died
    with the run. Returns how many objects were deleted."""
    keys = keys_under(s3, bucket, prefix)
    for start in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]],
                                                 "Quiet": True})
    return len(keys)


# --- bucket settings (audit) --------------------------------------------------------------------

def bucket_versioning(s3, bucket: str) -> str:
    """'Enabled', 'Suspended', or '' for a bucket that never had versioning."""
    return s3.get_bucket_versioning(Bucket=bucket).get("Status", "")


def bucket_public_access_block(s3, bucket: str) -> Optional[dict[str, bool]]:
    """The bucket's four public access block flags, or None when none is configured."""
    answer = _absent_is_none(lambda: s3.get_public_access_block(Bucket=bucket),
                             "NoSuchPublicAccessBlockConfiguration")
    return None if answer is None else answer["PublicAccessBlockConfiguration"]


def bucket_encryption_rules(s3, bucket: str) -> list[dict[str, Any]]:
    """The bucket's default encryption rules ([] when none is configured)."""
    answer = _absent_is_none(lambda: s3.get_bucket_encryption(Bucket=bucket),
                             "ServerSideEncryptionConfigurationNotFoundError")
    return [] if answer is None else answer["ServerSideEncryptionConfiguration"].get("Rules", [])


def _absent_is_none(call, *missing_codes: str) -> Any:
    """The call's answer, or None when S3 says the configuration does not exist."""
    from botocore.exceptions import ClientError
    try:
        return call()
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in missing_codes:
            return None
        raise


def object_size(s3, bucket: str, key: str) -> Optional[int]:
    """The object's size in bytes (HeadObject), or None when it does not exist (HTTP 404)."""
    answer = _absent_is_none(lambda: s3.head_object(Bucket=bucket, Key=key), "404", "NoSuchKey", "NotFound")
    return None if answer is None else int(answer["ContentLength"])


def object_presence(s3, bucket: str, key: str) -> tuple[bool, Optional[dt.datetime]]:
    """Whether the object exists (HeadObject), and when a lifecycle rule expires it: S3's x-amz-expiration
    `expiry-date` (None when no rule applies, or the endpoint does not say)."""
    answer = _absent_is_none(lambda: s3.head_object(Bucket=bucket, Key=key), "404", "NoSuchKey", "NotFound")
    if answer is None:
        return False, None
    match = re.search(r'expiry-date="([^"]+)"', answer.get("Expiration") or "")
    return True, email.utils.parsedate_to_datetime(match.group(1)) if match else None


def object_lock_configuration(s3, bucket: str) -> Optional[dict[str, Any]]:
    """The bucket's ObjectLockConfiguration, or None when Object Lock was never turned on."""
    answer = _absent_is_none(lambda: s3.get_object_lock_configuration(Bucket=bucket),
                             "ObjectLockConfigurationNotFoundError")
    return None if answer is None else answer.get("ObjectLockConfiguration", {})


def bucket_policy(s3, bucket: str) -> Optional[dict[str, Any]]:
    """The bucket policy document, or None when the bucket has none."""
    answer = _absent_is_none(lambda: s3.get_bucket_policy(Bucket=bucket), "NoSuchBucketPolicy")
    return None if answer is None else json.loads(answer["Policy"])


def bucket_lifecycle_rules(s3, bucket: str) -> list[dict[str, Any]]:
    """The bucket's lifecycle rules ([] when it has none)."""
    answer = _absent_is_none(lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket),
                             "NoSuchLifecycleConfiguration")
    return [] if answer is None else answer.get("Rules", [])


# --- point-in-time restore (scripts/workflows/pitr.py) ----------------------------------------------

def binlog_chain_ids(s3, bucket: str, prefix: str) -> list[str]:
    """The chain ids under the binlog prefix (`<prefix>/<chain>/...`), oldest first; not `gaps`."""
    return sorted(name for name in child_prefixes(s3, bucket, prefix) if name != "gaps")


def dump_manifest_keys(s3, bucket: str, prefix: str, database: str) -> list[str]:
    """Every dump manifest of `database` (`<prefix>/<database>/YYYY/MM/DD/*.manifest.json`)."""
    return sorted(k for k in keys_under(s3, bucket, f"{prefix}/{database}/") if k.endswith(".manifest.json"))
