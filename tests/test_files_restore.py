"""P1 files: archive paths to S3 with the manifest/latest discipline, restore one path verified."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile

import boto3
import pytest

from scripts.agent import quickport_dump
from tests.fixtures.mariadb import s3_keys

HOST = "prod-web-1"


@pytest.fixture
def tree(tmp_path):
    """Stand-ins for /var/www/quickport/.env and /opt/gt06-server."""
    app = tmp_path / "src" / "var" / "www" / "quickport"
    app.mkdir(parents=True)
    (app / ".env").write_text("APP_KEY=base64:abc\nDB_PASSWORD=from-ssm\n")
    gt06 = tmp_path / "src" / "opt" / "gt06-server"
    (gt06 / "config").mkdir(parents=True)
    (gt06 / "server.js").write_text("console.log('gt06');\n")
    (gt06 / "config" / "devices.json").write_bytes(os.urandom(5000))
    (gt06 / "current").symlink_to("server.js")
    return {"env": str(app / ".env"), "gt06": str(gt06), "root": tmp_path}


def archive(bucket, paths, **kw):
    return quickport_dump.archive_files(paths=paths, bucket=bucket, prefix="files", host=HOST, **kw)


@pytest.fixture
def restore(backupctl, dump_bucket, tmp_path):
    """restore(path, to): `backupctl files-restore --latest` of `path` from the dump bucket into `to`."""
    def run(path, to, *extra):
        return backupctl("files-restore", "--latest", "--bucket", dump_bucket, "--prefix", "files", "--path", path,
                         "--to", str(to), "--log-file", str(tmp_path / "ops.jsonl"), "--json", *extra)
    return run


def test_manifest_lists_each_file_with_size_and_sha256(dump_bucket, tree):
    manifest = archive(dump_bucket, [tree["env"], tree["gt06"]])
    files = {f["path"]: (f["size"], f["sha256"]) for f in manifest["files"] if f["type"] == "file"}
    expected = {p: (os.path.getsize(p), hashlib.sha256(open(p, "rb").read()).hexdigest())
                for p in (tree["env"], f"{tree['gt06']}/server.js", f"{tree['gt06']}/config/devices.json")}
    assert files == expected


def test_archive_is_published_under_host_with_latest_json(dump_bucket, tree):
    manifest = archive(dump_bucket, [tree["env"]])
    latest = json.loads(
        boto3.client("s3").get_object(Bucket=dump_bucket, Key=f"files/{HOST}/latest.json")["Body"].read())
    assert (manifest["key"].startswith(f"files/{HOST}/"), manifest["key"].endswith(".tar.zst"), latest["key"]) == \
        (True, True, manifest["key"])


def test_restore_extracts_only_the_requested_file(dump_bucket, restore, tree, tmp_path):
    archive(dump_bucket, [tree["env"], tree["gt06"]])
    out = tmp_path / "out"
    result = restore(tree["env"], out)
    restored = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert (result.code, restored) == (0, [tree["env"].lstrip("/")])


def test_restored_file_is_byte_identical(dump_bucket, restore, tree, tmp_path):
    archive(dump_bucket, [tree["env"], tree["gt06"]])
    out = tmp_path / "out"
    restore(tree["gt06"], out)
    restored = out / tree["gt06"].lstrip("/") / "config" / "devices.json"
    assert restored.read_bytes() == open(f"{tree['gt06']}/config/devices.json", "rb").read()


def test_restore_keeps_symlinks_as_links(dump_bucket, restore, tree, tmp_path):
    archive(dump_bucket, [tree["gt06"]])
    out = tmp_path / "out"
    restore(tree["gt06"], out)
    assert os.readlink(out / tree["gt06"].lstrip("/") / "current") == "server.js"


def test_restore_refuses_an_archive_whose_hash_differs(dump_bucket, restore, tree, tmp_path):
    manifest = archive(dump_bucket, [tree["env"]])
    s3 = boto3.client("s3")
    body = s3.get_object(Bucket=dump_bucket, Key=manifest["key"])["Body"].read()
    s3.put_object(Bucket=dump_bucket, Key=manifest["key"], Body=body[:-1] + bytes([body[-1] ^ 1]))
    out = tmp_path / "out"
    result = restore(tree["env"], out)
    assert (result.code, "does not match" in result.err, out.exists()) == (1, True, False)


def _publish_crafted_archive(bucket: str, members: dict, wrong_sha: frozenset = frozenset()) -> None:
    """An archive with hand-made members (bytes, or ("symlink", target)), published exactly as the
    dump script publishes; the manifest's sha256 of the members in `wrong_sha` is wrong."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(data, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, data[1]
                tar.addfile(info)
                continue
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    import gzip
    body = gzip.compress(raw.getvalue())
    key = f"files/{HOST}/2026/11/26/{HOST}-20261126T000000Z.tar.gz"
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    files = [{"path": "/" + n.lstrip("/"), "type": "symlink", "target": d[1]} if isinstance(d, tuple) else
             {"path": "/" + n.lstrip("/"), "type": "file", "size": len(d),
              "sha256": hashlib.sha256(d + (b"x" if n in wrong_sha else b"")).hexdigest()}
             for n, d in members.items()]
    manifest = {"key": key, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(), "compression": "gzip",
                "files": files, "finished_at": "2026-11-26T00:00:00Z"}
    quickport_dump.publish(s3, bucket, f"files/{HOST}/latest.json", manifest)


def test_restore_refuses_an_archive_with_a_dot_dot_member(dump_bucket, restore, tmp_path):
    _publish_crafted_archive(dump_bucket, {"etc/app.env": b"ok\n", "etc/../../escape": b"evil\n"})
    out = tmp_path / "deep" / "out"
    result = restore("/etc/app.env", out)
    assert (result.code, "unsafe member" in result.err, (tmp_path / "deep" / "escape").exists(),
            (out / "etc" / "app.env").exists()) == (1, True, False, False)


def test_restore_refuses_an_archive_with_an_absolute_member(dump_bucket, restore, tmp_path):
    _publish_crafted_archive(dump_bucket, {"etc/app.env": b"ok\n", "/tmp/qp-absolute-member": b"evil\n"})
    result = restore("/etc/app.env", tmp_path / "out")
    assert (result.code, "unsafe member" in result.err, os.path.exists("/tmp/qp-absolute-member")) == \
        (1, True, False)


def test_restore_never_overwrites_an_existing_file(dump_bucket, restore, tree, tmp_path):
    archive(dump_bucket, [tree["env"]])
    out = tmp_path / "out"
    existing = out / tree["env"].lstrip("/")
    existing.parent.mkdir(parents=True)
    existing.write_text("local edit\n")
    result = restore(tree["env"], out)
    assert (result.code, existing.read_text()) == (2, "local edit\n")


def test_restore_of_a_path_not_in_the_archive_fails(dump_bucket, restore, tree, tmp_path):
    archive(dump_bucket, [tree["env"]])
    assert restore("/etc/not-archived", tmp_path / "out").code == 1


def test_restore_with_a_relative_path_is_a_usage_error(restore, tree, tmp_path):
    assert restore("var/www/quickport/.env", tmp_path / "out").code == 2


def test_restore_finds_the_only_host_without_host_option(dump_bucket, restore, tree, tmp_path):
    archive(dump_bucket, [tree["env"]])
    result = restore(tree["env"], tmp_path / "out")
    assert (result.code, (tmp_path / "out" / tree["env"].lstrip("/")).exists()) == (0, True)


def test_restore_requires_host_when_several_hosts_exist(dump_bucket, restore, tree, tmp_path):
    archive(dump_bucket, [tree["env"]])
    quickport_dump.archive_files(paths=[tree["env"]], bucket=dump_bucket, prefix="files", host="other-host")
    result = restore(tree["env"], tmp_path / "out")
    assert (result.code, "other-host" in result.err) == (2, True)


def test_files_cli_archives_with_the_stable_arguments(dump_bucket, tree, capsys):
    code = quickport_dump.main(["files", "--bucket", dump_bucket, "--prefix", "files", "--path", tree["env"],
                                "--path", tree["gt06"], "--host", HOST, "--json"])
    manifest = json.loads(capsys.readouterr().out)
    assert (code, manifest["paths"], f"files/{HOST}/latest.json" in s3_keys(dump_bucket)) == \
        (0, [tree["env"], tree["gt06"]], True)


def test_files_missing_path_fails_without_publishing(dump_bucket, tree):
    code = quickport_dump.main(["files", "--bucket", dump_bucket, "--prefix", "files", "--path", "/nonexistent/x",
                                "--host", HOST])
    assert (code, s3_keys(dump_bucket)) == (1, [])


@pytest.fixture
def laravel(tmp_path):
    """A Laravel-like tree: `php artisan storage:link` made public/storage an ABSOLUTE symlink to
    storage/app/public; bootstrap/cache holds files; a relative link for good measure."""
    app = tmp_path / "src" / "var" / "www" / "quickport"
    (app / "public").mkdir(parents=True)
    (app / "storage" / "app" / "public" / "avatars").mkdir(parents=True)
    (app / "bootstrap" / "cache").mkdir(parents=True)
    (app / ".env").write_text("APP_KEY=base64:abc\n")
    (app / "public" / "index.php").write_text("<?php require '../vendor/autoload.php';\n")
    (app / "storage" / "app" / "public" / "avatars" / "1.png").write_bytes(os.urandom(3000))
    (app / "bootstrap" / "cache" / "config.php").write_text("<?php return [];\n")
    (app / "public" / "storage").symlink_to(app / "storage" / "app" / "public")
    (app / "current-env").symlink_to(".env")
    return app


def test_restore_brings_absolute_symlinks_back_as_links(dump_bucket, restore, laravel, tmp_path):
    archive(dump_bucket, [str(laravel)])   # the real agent's archive, as the nightly job makes it
    out = tmp_path / "out"
    result = restore(str(laravel), out)
    restored = out / str(laravel).lstrip("/")
    assert (result.code, os.readlink(restored / "public" / "storage"), os.readlink(restored / "current-env"),
            (restored / "storage" / "app" / "public" / "avatars" / "1.png").read_bytes()) == \
        (0, str(laravel / "storage" / "app" / "public"), ".env",
         (laravel / "storage" / "app" / "public" / "avatars" / "1.png").read_bytes()), result.err


def test_restore_never_writes_through_a_link(dump_bucket, restore, tmp_path):
    # A crafted archive: an absolute link, then a member "under" it. Following the link would write
    # outside --to; the restore refuses instead and puts nothing anywhere.
    outside = tmp_path / "outside"
    outside.mkdir()
    _publish_crafted_archive(dump_bucket, {"app/public/storage": ("symlink", str(outside)),
                                           "app/public/storage/evil.php": b"<?php evil();\n"})
    out = tmp_path / "out"
    result = restore("/app", out)
    assert (result.code, list(outside.iterdir()), out.exists(), _leftovers(tmp_path)) == (1, [], False, [])


def test_a_file_differing_from_the_manifest_leaves_nothing_at_to(dump_bucket, restore, tmp_path):
    _publish_crafted_archive(dump_bucket, {"etc/app.env": b"ok\n", "etc/other.env": b"also ok\n"},
                             wrong_sha={"etc/other.env"})
    out = tmp_path / "out"
    result = restore("/etc", out)
    assert (result.code, "differ from the manifest" in result.err, out.exists(), _leftovers(tmp_path)) == \
        (1, True, False, [])


def test_restore_into_an_existing_directory_keeps_what_is_there(dump_bucket, restore, tree, tmp_path):
    archive(dump_bucket, [tree["env"], tree["gt06"]])
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    result = restore(tree["gt06"], out)
    assert (result.code, (out / "notes.txt").read_text(),
            (out / tree["gt06"].lstrip("/") / "server.js").exists(), _leftovers(tmp_path)) == (0, "mine\n", True, [])


def _leftovers(directory) -> list[str]:
    """Hidden staging directories a restore left anywhere under `directory`."""
    return [str(p) for p in directory.rglob(".*restoring-*")]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs (root only: skipped where mounting is not allowed)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_leaves_nothing_at_to_and_the_re_run_works(dump_bucket, restore, tree, tiny_disk, tmp_path):
    big = tree["root"] / "src" / "opt" / "gt06-server" / "firmware.bin"
    big.write_bytes(os.urandom(1536 * 1024))   # fits the 2 MiB disk, but not beside the filler
    archive(dump_bucket, [tree["gt06"]])
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * (1024 * 1024))
    out = tiny_disk / "out"
    first = restore(tree["gt06"], out)
    state_after_failure = (first.code, "No space left on device" in first.err, out.exists(),
                           sorted(p.name for p in tiny_disk.iterdir()))
    filler.unlink()
    second = restore(tree["gt06"], out)
    restored = out / str(big).lstrip("/")
    assert state_after_failure == (1, True, False, ["filler"]), first.err
    assert (second.code, restored.read_bytes() == big.read_bytes()) == (0, True), second.err


def test_restore_into_a_path_under_a_file_fails_in_one_line(dump_bucket, restore, tree, tmp_path):
    archive(dump_bucket, [tree["env"]])
    (tmp_path / "a-file").write_text("not a directory\n")
    result = restore(tree["env"], tmp_path / "a-file" / "out")
    failures = [line for line in result.err.splitlines() if line.startswith("backupctl ")]
    assert (result.code, len(failures), "not a directory" in failures[0]) == (2, 1, True)
