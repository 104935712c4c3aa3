"""`backupctl snapshot` for OS, kernel or architecture changes (seed section 5): an AMI instead.

The emulator makes the AMI (CreateImage, DescribeImages, tags). Two things moto cannot show are stubbed
with a PartialStubber (checked against the EC2 service model): the NoReboot flag CreateImage
received (moto ignores it), and the AMI's root snapshot, which moto creates from a fresh volume
instead of the instance's root volume (real AWS records the source volume as its VolumeId).
"""
from __future__ import annotations

import datetime as dt

import pytest
from botocore.stub import ANY

from scripts.offline.stubs import PartialStubber
from scripts.workflows.snapshots import classify_action
from tests.fixtures.aws_account import strategy_snapshots

TODAY = dt.datetime.now(dt.timezone.utc).date().isoformat()


def _images(ec2, name):
    return ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])["Images"]


def _tags(resource):
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


# The section 5 vocabulary (docs/cli-snapshots.md): action -> kind, and the word that decides.
VOCABULARY_TABLE = [
    ("os-upgrade", "ami", "os"), ("kernel-change", "ami", "kernel"), ("kernel-upgrade", "ami", "kernel"),
    ("architecture-change", "ami", "architecture"), ("distro-upgrade", "ami", "distro"),
    ("ubuntu-release-upgrade", "ami", "ubuntu"), ("os-upgrade-22-04-to-24-04", "ami", "os"),
    ("arch-change-to-arm64", "ami", "arch"),
    # what the trial found only a snapshot for
    ("ubuntu-22-to-24", "ami", "ubuntu"), ("arm64-migration", "ami", "arm64"),
    ("dnf-system-upgrade", "ami", "system-upgrade"),
    # distribution names and versions
    ("debian-12-to-13", "ami", "debian"), ("al2-to-al2023", "ami", "al2"), ("amazon-linux-2023", "ami", "amazon-linux"),
    ("centos7-to-rocky9", "ami", "centos7"), ("rhel9-minor-update", "ami", "rhel9"), ("move-to-almalinux", "ami",
                                                                                       "almalinux"),
    ("bookworm-upgrade", "ami", "bookworm"), ("fedora-41", "ami", "fedora"),
    # release, dist and system upgrades
    ("apt-dist-upgrade", "ami", "dist-upgrade"), ("do-release-upgrade", "ami", "release-upgrade"),
    ("apt-full-upgrade", "ami", "full-upgrade"), ("leapp-upgrade", "ami", "leapp"),
    # architectures
    ("graviton-move", "ami", "graviton"), ("x86-64-to-aarch64", "ami", "x86"), ("move-to-amd64", "ami", "amd64"),
    # kernel, boot loader, C library
    ("grub-config", "ami", "grub"), ("grub2-install", "ami", "grub2"), ("glibc-update", "ami", "glibc"),
    ("initramfs-rebuild", "ami", "initramfs"), ("livepatch-enable", "ami", "livepatch"),
    # ordinary maintenance: a snapshot
    ("php-upgrade", "snapshot", None), ("nginx-config", "snapshot", None), ("composer-update", "snapshot", None),
    ("mariadb-tuning", "snapshot", None), ("cost-review", "snapshot", None), ("kernelspace-docs", "snapshot", None),
    ("archive-cleanup", "snapshot", None), ("laravel-migrate", "snapshot", None), ("gt06-server-deploy", "snapshot",
                                                                                    None),
    ("security-patches", "snapshot", None), ("osm-tiles", "snapshot", None), ("php-8-3", "snapshot", None),
]


def test_the_vocabulary_table_has_at_least_30_actions():
    assert len(VOCABULARY_TABLE) >= 30


@pytest.mark.parametrize("action, kind, word", VOCABULARY_TABLE)
def test_the_section_5_vocabulary_chooses_the_kind_and_names_the_deciding_word(action, kind, word):
    choice = classify_action(action)

    assert choice.kind == kind
    if word:
        assert f"{word!r} names" in choice.reason


def test_snapshot_says_which_kind_it_chose_and_why(prod_instance, backupctl):
    result = backupctl("snapshot", "--action", "php-upgrade", *prod_instance.common_args())

    assert "kind snapshot: no word of the action names the OS" in result.out


def test_forced_kind_says_it_overrode_the_vocabulary(prod_instance, backupctl):
    result = backupctl("snapshot", "--action", "php-upgrade", "--kind", "ami", "--force", "--json",
                       *prod_instance.common_args(), "--timeout", "0.05")

    assert "kind: ami (--kind ami --force overrides the vocabulary, which says snapshot" in result.err


def _stub_root_snapshot(inst):
    """The AMI's root snapshot as real AWS describes it: of the instance's root volume."""
    ec2 = inst.client("ec2")
    stubber = PartialStubber(ec2, {"DescribeSnapshots"})
    stubber.add_response("describe_snapshots", {"Snapshots": [{
        "SnapshotId": "snap-0123456789abcdef0", "VolumeId": inst.root_volume_id, "State": "completed",
        "Progress": "100%", "StartTime": dt.datetime.now(dt.timezone.utc), "VolumeSize": 8,
        "Tags": [{"Key": "Instance", "Value": inst.instance_id},
                 {"Key": "Strategy", "Value": "quickport-backup"}]}]}, {"SnapshotIds": ANY})
    return ec2, stubber


def test_os_upgrade_makes_an_ami_named_for_the_action_and_passes_the_checklist(prod_instance, backupctl):
    ec2, stubber = _stub_root_snapshot(prod_instance)
    with stubber:
        result = backupctl("snapshot", "--action", "os-upgrade", "--json", *prod_instance.common_args(),
                           clients={"ec2": ec2})

    assert result.code == 0, result.err
    doc = result.json()
    [image] = _images(prod_instance.ec2, f"prod-root-{TODAY}-before-os-upgrade")
    assert (doc["kind"], doc["image"]["ImageId"], doc["checklist"]["items"][0]["name"]) == (
        "ami", image["ImageId"], "image available")


def test_ami_and_its_snapshots_are_tagged_like_a_pre_maintenance_snapshot(prod_instance, backupctl):
    backupctl("snapshot", "--action", "kernel-change", *prod_instance.common_args())

    [image] = _images(prod_instance.ec2, f"prod-root-{TODAY}-before-kernel-change")
    for resource in (image, *strategy_snapshots(prod_instance.ec2)):
        tags = _tags(resource)
        assert (tags["Reason"], tags["Instance"], tags["Strategy"]) == (
            "kernel-change", prod_instance.instance_id, "quickport-backup")
    assert _tags(strategy_snapshots(prod_instance.ec2)[0])["Image"] == image["ImageId"]


def test_same_day_rerun_reuses_the_ami(prod_instance, backupctl):
    backupctl("snapshot", "--action", "os-upgrade", *prod_instance.common_args())
    second = backupctl("snapshot", "--action", "os-upgrade", *prod_instance.common_args())

    assert "[reused]" in second.out
    assert len(_images(prod_instance.ec2, f"prod-root-{TODAY}-before-os-upgrade")) == 1


def test_same_day_rerun_does_not_retag_the_amis_snapshots(prod_instance, backupctl):
    backupctl("snapshot", "--action", "os-upgrade", *prod_instance.common_args())
    ec2 = prod_instance.client("ec2")
    # The guard rails deny CreateTags that touch the Strategy tag of a tagged snapshot: a re-run must
    # tag no snapshot (the instance's snapshot claim is the only CreateTags it may send).
    tagged: list[str] = []
    ec2.meta.events.register("provide-client-params.ec2.CreateTags",
                             lambda params, **_: tagged.extend(params["Resources"]))
    second = backupctl("snapshot", "--action", "os-upgrade", "--json", *prod_instance.common_args(),
                       clients={"ec2": ec2})

    assert second.json()["reused"] is True
    assert tagged == [prod_instance.instance_id]


def _create_image_only(inst, no_reboot: bool):
    """CreateImage is stubbed to see its parameters; the AMI then never appears, so the command
    stops at its (tiny) timeout."""
    ec2 = inst.client("ec2")
    stubber = PartialStubber(ec2, {"CreateImage"})
    stubber.add_response("create_image", {"ImageId": "ami-0123456789abcdef0"}, {
        "InstanceId": inst.instance_id, "Name": f"prod-root-{TODAY}-before-os-upgrade", "NoReboot": no_reboot,
        "Description": ANY, "TagSpecifications": ANY})
    return ec2, stubber


def test_ami_is_made_without_a_reboot_by_default_with_a_warning(prod_instance, backupctl):
    ec2, stubber = _create_image_only(prod_instance, no_reboot=True)
    with stubber:
        result = backupctl("snapshot", "--action", "os-upgrade", "--timeout", "0.001",
                           *prod_instance.common_args(), clients={"ec2": ec2})
        stubber.assert_no_pending_responses()

    assert "WITHOUT a reboot" in result.err


def test_ami_with_reboot_lets_ec2_reboot_the_instance(prod_instance, backupctl):
    ec2, stubber = _create_image_only(prod_instance, no_reboot=False)
    with stubber:
        result = backupctl("snapshot", "--action", "os-upgrade", "--reboot", "--timeout", "0.001",
                           *prod_instance.common_args(), clients={"ec2": ec2})
        stubber.assert_no_pending_responses()

    assert "WITHOUT a reboot" not in result.err


def test_an_ami_for_an_ordinary_action_without_force_exits_2(prod_instance, backupctl):
    result = backupctl("snapshot", "--action", "php-upgrade", "--kind", "ami", *prod_instance.common_args())

    assert result.code == 2
    assert "--force" in result.err and "never made casually" in result.err
    assert _images(prod_instance.ec2, f"prod-root-{TODAY}-before-php-upgrade") == []


def test_an_ami_for_an_ordinary_action_with_force_is_made(prod_instance, backupctl):
    backupctl("snapshot", "--action", "php-upgrade", "--kind", "ami", "--force", *prod_instance.common_args())

    assert len(_images(prod_instance.ec2, f"prod-root-{TODAY}-before-php-upgrade")) == 1


def test_only_a_snapshot_for_an_os_upgrade_without_force_exits_2(prod_instance, backupctl):
    result = backupctl("snapshot", "--action", "os-upgrade", "--kind", "snapshot", *prod_instance.common_args())

    assert result.code == 2
    assert "section 5 requires an AMI" in result.err
    assert strategy_snapshots(prod_instance.ec2) == []


def test_reboot_for_a_snapshot_exits_2(prod_instance, backupctl):
    result = backupctl("snapshot", "--action", "php-upgrade", "--reboot", *prod_instance.common_args())

    assert result.code == 2
    assert "--reboot: only applies to an AMI" in result.err
