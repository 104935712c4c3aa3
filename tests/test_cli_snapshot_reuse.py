"""`backupctl snapshot` re-runs: reuse only a young snapshot (--reuse-within, default 30 minutes),
number a new one -2, -3..., converge when two runs race, tag RetainUntil, and log every start's end.

The emulator answers; where a snapshot must be hours old (moto stamps StartTime now), a PartialStubber
answers the one same-day lookup and everything after it reaches the emulator (passthrough).
"""
from __future__ import annotations

import datetime as dt
import http.client
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

from scripts.offline.stubs import PartialStubber
from tests.fixtures.aws_account import strategy_snapshots
from tests.fixtures.cli import LAUNCHER

NOW = lambda: dt.datetime.now(dt.timezone.utc)  # noqa: E731


def _name(suffix: str = "") -> str:
    return f"prod-root-{NOW().date().isoformat()}-before-php-upgrade{suffix}"


def _tags(resource) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def _snapshot(backupctl, prod, *extra: str, clients=None):
    result = backupctl("snapshot", "--action", "php-upgrade", "--json", *extra, *prod.common_args(),
                       clients=clients)
    assert result.code == 0, result.err
    return result.json()


# --- item 15: reuse only when young ------------------------------------------------------------------

def test_a_same_day_snapshot_older_than_30_minutes_is_not_reused_and_the_new_one_is_numbered_2(prod_instance,
                                                                                               backupctl):
    ec2 = prod_instance.client("ec2")
    stub = PartialStubber(ec2, {"DescribeSnapshots"}, passthrough=True)
    nine_am = {"SnapshotId": "snap-0123456789abcdef0", "VolumeId": prod_instance.root_volume_id,
               "State": "completed", "StartTime": NOW() - dt.timedelta(hours=9),
               "Tags": [{"Key": "Name", "Value": _name()}, {"Key": "Reason", "Value": "php-upgrade"}]}
    stub.add_response("describe_snapshots", {"Snapshots": [nine_am]},
                      {"OwnerIds": ["self"], "Filters": [{"Name": "tag:Name", "Values": [_name(), _name("-*")]}]})
    with stub:
        doc = _snapshot(backupctl, prod_instance, clients={"ec2": ec2})

    assert (doc["reused"], doc["name"]) == (False, _name("-2"))
    assert "older than --reuse-within 30 min" in doc["reuseNote"]
    assert [_tags(s)["Name"] for s in strategy_snapshots(prod_instance.ec2)] == [_name("-2")]


def test_reuse_within_decides_and_the_newest_of_the_day_is_the_one_reused(prod_instance, backupctl):
    first = _snapshot(backupctl, prod_instance)
    time.sleep(1.2)
    second = _snapshot(backupctl, prod_instance, "--reuse-within", "0.01")    # 0.6 s
    third = _snapshot(backupctl, prod_instance)

    assert (first["name"], second["name"]) == (_name(), _name("-2"))
    assert second["reused"] is False and third["reused"] is True
    assert third["snapshot"]["SnapshotId"] == second["snapshot"]["SnapshotId"]


def test_reuse_within_must_be_minutes_from_0(prod_instance, backupctl):
    result = backupctl("snapshot", "--action", "php-upgrade", "--reuse-within", "-1", *prod_instance.common_args())

    assert result.code == 2 and "--reuse-within" in result.err
    assert strategy_snapshots(prod_instance.ec2) == []


# --- item 16: RetainUntil ----------------------------------------------------------------------------

def _retain_until(prod) -> dt.datetime:
    [snap] = strategy_snapshots(prod.ec2)
    return dt.datetime.fromisoformat(_tags(snap)["RetainUntil"])


def test_every_snapshot_is_tagged_retain_until_30_days_ahead(prod_instance, backupctl):
    doc = _snapshot(backupctl, prod_instance)

    until = _retain_until(prod_instance)
    assert abs((until - NOW()) - dt.timedelta(days=30)) < dt.timedelta(minutes=5)
    assert doc["retainUntil"] == until.isoformat()


def test_retain_days_sets_the_retain_until_tag(prod_instance, backupctl):
    _snapshot(backupctl, prod_instance, "--retain-days", "7")

    assert abs((_retain_until(prod_instance) - NOW()) - dt.timedelta(days=7)) < dt.timedelta(minutes=5)


def test_the_stack_key_snapshots_retain_days_is_the_default(prod_instance, backupctl, tmp_path):
    prod_instance.config_file = prod_instance.write_config(tmp_path / "Pulumi.prod.yaml",
                                                           snapshots={"retainDays": 12})
    _snapshot(backupctl, prod_instance)

    assert abs((_retain_until(prod_instance) - NOW()) - dt.timedelta(days=12)) < dt.timedelta(minutes=5)


# --- item 13: every start has exactly one end --------------------------------------------------------

def _events(prod, prefix: str) -> list[str]:
    return [line["event"] for line in prod.log_lines() if line["event"].startswith(prefix)]


def test_a_snapshot_logs_started_and_finished(prod_instance, backupctl):
    _snapshot(backupctl, prod_instance)

    assert _events(prod_instance, "snapshot-") == ["snapshot-started", "snapshot-created", "snapshot-timestamp",
                                                   "snapshot-finished"]


def test_a_lock_answer_that_cannot_be_parsed_still_logs_snapshot_failed(prod_instance, backupctl):
    # The emulator has no LockSnapshot: its answer is not the XML botocore expects (ResponseParserError).
    result = backupctl("snapshot", "--action", "php-upgrade", "--lock", "governance", "--lock-days", "1",
                       *prod_instance.common_args())

    assert result.code == 1
    assert _events(prod_instance, "snapshot-") == ["snapshot-started", "snapshot-created", "snapshot-failed"]


def _launch(prod, *argv: str, endpoint: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "QUICKPORT_NO_VENV": "1"}
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return subprocess.Popen([sys.executable, str(LAUNCHER), *argv, *prod.common_args()], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_during_a_snapshot_logs_snapshot_interrupted(prod_instance):
    proc = _launch(prod_instance, "snapshot", "--action", "php-upgrade")
    deadline = time.monotonic() + 60
    while "snapshot-started" not in _events(prod_instance, "snapshot-"):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)

    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)

    assert proc.returncode == 130
    assert _events(prod_instance, "snapshot-")[-1] == "snapshot-interrupted"
    assert _events(prod_instance, "snapshot-").count("snapshot-started") == 1


# --- item 11: two runs at once -------------------------------------------------------------------------

class LookupBarrier:
    """A pass-through HTTP proxy in front of the emulator that holds each run's same-day lookup
    (DescribeSnapshots by tag:Name) until `parties` runs have asked, or `timeout` seconds passed:
    both runs then look before either creates, the race the issue found."""

    def __init__(self, upstream: str, parties: int = 2, timeout: float = 8.0):
        self.upstream = urlsplit(upstream)
        self.barrier = threading.Barrier(parties, timeout=timeout)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if b"Action=DescribeSnapshots" in body and b"tag%3AName" in body:
                    try:
                        proxy.barrier.wait()
                    except threading.BrokenBarrierError:
                        pass
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                conn.request("POST", self.path, body, {k: v for k, v in self.headers.items() if k.lower() != "host"})
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LookupBarrier":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_two_concurrent_runs_converge_on_one_snapshot(prod_instance, aws, tmp_path):
    with LookupBarrier(aws) as proxy:
        runs = [_launch(prod_instance, "snapshot", "--action", "php-upgrade", "--json", endpoint=proxy.endpoint)
                for _ in range(2)]
        outputs = [run.communicate(timeout=120) for run in runs]

    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    docs = [json.loads(out) for out, _ in outputs]
    assert len({d["snapshot"]["SnapshotId"] for d in docs}) == 1
    assert sorted(d["reused"] for d in docs) == [False, True]
    assert len(strategy_snapshots(prod_instance.ec2)) == 1
    tags = {t["Key"] for t in prod_instance.ec2.describe_instances(
        InstanceIds=[prod_instance.instance_id])["Reservations"][0]["Instances"][0].get("Tags", [])}
    assert "quickport:snapshot-claim" not in tags

