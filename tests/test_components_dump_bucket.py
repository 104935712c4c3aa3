"""DumpBucket on the mock engine: private, encrypted, versioned, TLS-only, self-expiring."""
import json

DUMPS_NS = "quickport-backup:dumps"
BUCKET_ARN = "arn:aws:s3:::quickport-prod-db-dumps-ap-south-1"


def _with_dumps(stack_with, prod_config, **changes):
    return stack_with({DUMPS_NS: {**prod_config[DUMPS_NS], **changes}})


def _lifecycle(declared):
    return declared.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                        "quickport-prod-dumps-lifecycle")


def _lifecycle_rules(declared):
    """The prefix rules by prefix (the bucket-wide abort rule has an empty filter)."""
    return {rule["filter"]["prefix"]: rule for rule in _lifecycle(declared).inputs["rules"] if rule["filter"]}


def _policy_statements(declared):
    policy = declared.one("aws:s3/bucketPolicy:BucketPolicy", "quickport-prod-dumps-policy")
    return {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}


def _bucket(declared):
    return declared.one("aws:s3/bucket:Bucket", "quickport-prod-dumps-bucket")


def test_bucket_is_named_from_config_protected_and_never_force_destroyed(prod_stack):
    bucket = _bucket(prod_stack)
    assert bucket.inputs["bucket"] == "quickport-prod-db-dumps-ap-south-1"
    assert bucket.inputs["forceDestroy"] is False
    assert bucket.protect


def test_every_bucket_setting_applies_to_the_bucket(prod_stack):
    bucket_id = _bucket(prod_stack).id
    for type_ in ("bucketVersioning:BucketVersioning", "bucketPublicAccessBlock:BucketPublicAccessBlock",
                  "bucketOwnershipControls:BucketOwnershipControls", "bucketPolicy:BucketPolicy",
                  "bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                  "bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                  "bucketObjectLockConfiguration:BucketObjectLockConfiguration"):
        [child] = [r for r in prod_stack.of_type(f"aws:s3/{type_}") if r.name.startswith("quickport-prod-dumps-")]
        assert child.inputs["bucket"] == bucket_id, type_


def test_versioning_is_enabled(prod_stack):
    versioning = prod_stack.one("aws:s3/bucketVersioning:BucketVersioning", "quickport-prod-dumps-versioning")
    assert versioning.inputs["versioningConfiguration"] == {"status": "Enabled"}


def test_objects_are_encrypted_with_the_buckets_own_rotating_key_and_a_bucket_key(prod_stack):
    key = prod_stack.one("aws:kms/key:Key", "quickport-prod-dumps-key")
    assert key.inputs["enableKeyRotation"] is True and key.protect
    [rule] = prod_stack.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "quickport-prod-dumps-encryption").inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms",
                                                          "kmsMasterKeyId": key.outputs["arn"]}
    assert rule["bucketKeyEnabled"] is True


def test_bucket_key_is_not_the_vault_key(prod_stack):
    vault_key = prod_stack.one("aws:kms/key:Key", "quickport-prod-vault-key")
    bucket_key = prod_stack.one("aws:kms/key:Key", "quickport-prod-dumps-key")
    assert vault_key.outputs["arn"] != bucket_key.outputs["arn"]
    # Its key policy names no service: only IAM (the instance role's policy) grants use of it.
    [statement] = json.loads(bucket_key.inputs["policy"])["Statement"]
    assert statement["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}


def test_all_four_public_access_blocks_are_on(prod_stack):
    block = prod_stack.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
                           "quickport-prod-dumps-public-access-block")
    for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
        assert block.inputs[flag] is True, flag


def test_bucket_owner_owns_every_object(prod_stack):
    ownership = prod_stack.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls",
                               "quickport-prod-dumps-ownership")
    assert ownership.inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}


def test_bucket_policy_denies_requests_without_tls(prod_stack):
    tls = _policy_statements(prod_stack)["DenyInsecureTransport"]
    assert tls["Effect"] == "Deny" and tls["Principal"] == "*" and tls["Action"] == "s3:*"
    assert tls["Resource"] == [BUCKET_ARN, f"{BUCKET_ARN}/*"]
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_bucket_policy_denies_deleting_object_versions_to_everyone(prod_stack):
    versions = _policy_statements(prod_stack)["DenyObjectVersionDeletion"]
    assert versions == {"Sid": "DenyObjectVersionDeletion", "Effect": "Deny", "Principal": "*",
                        "Action": "s3:DeleteObjectVersion", "Resource": f"{BUCKET_ARN}/*"}


def test_bucket_policy_waits_for_the_public_access_block(prod_stack):
    policy = prod_stack.one("aws:s3/bucketPolicy:BucketPolicy", "quickport-prod-dumps-policy")
    block = prod_stack.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
                           "quickport-prod-dumps-public-access-block")
    assert block.urn in policy.dependencies


def test_lifecycle_expires_dumps_and_files_after_the_retention_days(stack_with, prod_config):
    rules = _lifecycle_rules(_with_dumps(stack_with, prod_config, retentionDays=45))
    assert sorted(rules) == ["binlog/", "files/", "mysql/", "restores/"]
    for rule in (rules["files/"], rules["mysql/"]):
        assert rule["status"] == "Enabled"
        assert rule["expiration"] == {"days": 45}


def test_lifecycle_keeps_noncurrent_versions_the_configured_days(stack_with, prod_config):
    rules = _lifecycle_rules(_with_dumps(stack_with, prod_config, noncurrentRetentionDays=12))
    for rule in rules.values():
        assert rule["noncurrentVersionExpiration"] == {"noncurrentDays": 12}


def test_lifecycle_keeps_noncurrent_versions_at_least_seven_days(stack_with, prod_config):
    rules = _lifecycle_rules(_with_dumps(stack_with, prod_config, noncurrentRetentionDays=2))
    for rule in rules.values():
        assert rule["noncurrentVersionExpiration"] == {"noncurrentDays": 7}


def test_lifecycle_aborts_incomplete_multipart_uploads_bucket_wide_after_a_day(prod_stack):
    # CKV_AWS_300: an empty filter, so an upload under any prefix (binlog segments too) is covered.
    [bucket_wide] = [rule for rule in _lifecycle(prod_stack).inputs["rules"] if not rule["filter"]]
    assert bucket_wide == {"id": "abort-incomplete-multipart-uploads", "status": "Enabled", "filter": {},
                           "abortIncompleteMultipartUpload": {"daysAfterInitiation": 1}}


def test_lifecycle_waits_for_versioning(prod_stack):
    versioning = prod_stack.one("aws:s3/bucketVersioning:BucketVersioning", "quickport-prod-dumps-versioning")
    assert versioning.urn in _lifecycle(prod_stack).dependencies


def test_lifecycle_follows_configured_prefixes(stack_with, prod_config):
    rules = _lifecycle_rules(_with_dumps(stack_with, prod_config, prefix="db/mariadb", filesPrefix="p1"))
    assert sorted(rules) == ["binlog/", "db/mariadb/", "p1/", "restores/"]


def test_restore_hand_offs_expire_after_a_week(prod_stack):
    rule = _lifecycle_rules(prod_stack)["restores/"]
    assert rule["expiration"] == {"days": 7}
    assert rule["noncurrentVersionExpiration"] == {"noncurrentDays": 7}


def _with(stack_with, prod_config, section, **changes):
    ns = f"quickport-backup:{section}"
    return stack_with({ns: {**prod_config[ns], **changes}})


def test_binlog_segments_stay_current_for_the_binlog_retention_and_old_versions_like_the_others(prod_stack):
    rule = _lifecycle_rules(prod_stack)["binlog/"]
    assert rule == {"id": "expire-binlog", "status": "Enabled", "filter": {"prefix": "binlog/"},
                    "expiration": {"days": 37}, "noncurrentVersionExpiration": {"noncurrentDays": 7}}


def test_binlog_rule_follows_the_binlog_prefix_and_retention(stack_with, prod_config):
    rules = _lifecycle_rules(_with(stack_with, prod_config, "binlog", prefix="pitr/segments", retentionDays=60))
    assert rules["pitr/segments/"]["id"] == "expire-pitr-segments"
    assert rules["pitr/segments/"]["expiration"] == {"days": 60}
    assert "binlog/" not in rules


def test_binlog_retention_defaults_to_a_week_past_the_dump_retention(stack_with, prod_config):
    binlog = {k: v for k, v in prod_config["quickport-backup:binlog"].items() if k != "retentionDays"}
    declared = stack_with({"quickport-backup:binlog": binlog,
                           DUMPS_NS: {**prod_config[DUMPS_NS], "retentionDays": 45}})
    assert _lifecycle_rules(declared)["binlog/"]["expiration"] == {"days": 52}


def test_binlog_rule_stays_when_shipping_is_disabled(stack_with, prod_config):
    # Segments shipped while it was on must still expire, not linger for ever.
    rules = _lifecycle_rules(_with(stack_with, prod_config, "binlog", enabled=False))
    assert rules["binlog/"]["expiration"] == {"days": 37}


def test_every_bucket_child_is_parented_to_the_component(prod_stack):
    component = prod_stack.one("quickport:backup:DumpBucket")
    assert len(prod_stack.children_of(component)) == 10


# --- Object Lock and a policy that protects itself ------------------------------------------------

def _object_lock(declared):
    return declared.one("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
                        "quickport-prod-dumps-object-lock")


def test_every_version_gets_governance_default_retention_for_the_dump_retention(prod_stack):
    lock = _object_lock(prod_stack)
    assert lock.inputs["objectLockEnabled"] == "Enabled"
    assert lock.inputs["rule"] == {"defaultRetention": {"mode": "GOVERNANCE", "days": 30}}
    assert lock.protect


def test_object_lock_mode_and_days_follow_the_config(stack_with, prod_config):
    declared = _with_dumps(stack_with, prod_config, objectLock={"mode": "compliance", "days": 90})
    assert _object_lock(declared).inputs["rule"] == {"defaultRetention": {"mode": "COMPLIANCE", "days": 90}}


def test_object_lock_is_applied_after_versioning(prod_stack):
    versioning = prod_stack.one("aws:s3/bucketVersioning:BucketVersioning", "quickport-prod-dumps-versioning")
    assert versioning.urn in _object_lock(prod_stack).dependencies


def test_the_existing_bucket_is_never_replaced_to_turn_object_lock_on(prod_stack):
    # object_lock_enabled on the Bucket forces a new bucket (ForceNew upstream); it must stay unset.
    assert "objectLockEnabled" not in _bucket(prod_stack).inputs


def test_bucket_policy_denies_replacing_or_removing_itself_to_everyone(prod_stack):
    # S3 lets the account's root user through a Deny of these, so root is the way back.
    assert _policy_statements(prod_stack)["DenyPolicyChangesExceptByRoot"] == {
        "Sid": "DenyPolicyChangesExceptByRoot", "Effect": "Deny", "Principal": "*",
        "Action": ["s3:PutBucketPolicy", "s3:DeleteBucketPolicy"], "Resource": BUCKET_ARN}
