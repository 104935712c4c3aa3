"""RecycleBin on the mock engine: Region-level rules for snapshots and AMIs, locked by config."""
from components.recycle_bin import RecycleBin, RecycleBinArgs

RBIN_NS = "quickport-backup:recycleBin"


def _rules(declared):
    return {r.inputs["resourceType"]: r for r in declared.of_type("aws:rbin/rule:Rule")}


def test_one_rule_each_for_ebs_snapshots_and_ec2_images(prod_stack):
    assert sorted(_rules(prod_stack)) == ["EBS_SNAPSHOT", "EC2_IMAGE"]


def test_rules_are_region_level_without_tag_filters(prod_stack):
    for rule in _rules(prod_stack).values():
        assert "resourceTags" not in rule.inputs
        assert "excludeResourceTags" not in rule.inputs


def test_rules_keep_deleted_resources_for_the_configured_days(stack_with):
    declared = stack_with({RBIN_NS: {"retentionDays": 21, "lock": True, "unlockDelayDays": 7}})
    for rule in _rules(declared).values():
        assert rule.inputs["retentionPeriod"] == {"retentionPeriodUnit": "DAYS", "retentionPeriodValue": 21}


def test_locked_rules_carry_the_unlock_delay_in_days(stack_with):
    declared = stack_with({RBIN_NS: {"retentionDays": 7, "lock": True, "unlockDelayDays": 10}})
    for rule in _rules(declared).values():
        assert rule.inputs["lockConfiguration"] == {
            "unlockDelay": {"unlockDelayUnit": "DAYS", "unlockDelayValue": 10}}


def test_no_lock_configuration_when_lock_is_false(stack_with):
    declared = stack_with({RBIN_NS: {"retentionDays": 7, "lock": False}})
    for rule in _rules(declared).values():
        assert "lockConfiguration" not in rule.inputs


def test_rules_are_protected_and_parented_to_the_component(prod_stack):
    component = prod_stack.one("quickport:backup:RecycleBin")
    for rule in _rules(prod_stack).values():
        assert rule.protect
        assert rule.parent == component.urn


def test_component_exposes_both_rule_ids(run_component):
    seen = {}

    def program():
        bin_ = RecycleBin("rb", RecycleBinArgs())
        bin_.snapshot_rule_id.apply(lambda v: seen.__setitem__("snapshot", v))
        bin_.image_rule_id.apply(lambda v: seen.__setitem__("image", v))
    run_component(program)
    assert seen == {"snapshot": "rb-ebs-snapshot-id", "image": "rb-ec2-image-id"}
