"""A stand-in production account in the emulator: what `pulumi up` and the real server would leave.

One builder for `backupctl demo` and the tests. Everything is arranged with the same boto3 API the
product uses, through clients built as the CLI builds them (scripts/aws/session.py), so it reaches
whatever AWS_ENDPOINT_URL names: the emulator, never real AWS by accident (the callers set the
endpoint and fake credentials first).
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from components.config import REPO_ROOT
from components.tags import NAMESPACE, STRATEGY_TAG_KEY, STRATEGY_TAG_VALUE
from scripts.aws.session import new_client

REGION = "ap-south-1"
ROOT_DEVICE = "/dev/sda1"
INSTANCE_ROLE = "quickport-prod-ec2"


@dataclass
class StandIn:
    """The instance and what the stack config says about it."""
    region: str
    vpc_id: str
    subnet_id: str
    image_id: str
    root_device: str
    instance_id: str
    root_volume_id: str
    allocation_id: str                    # allocated; associated only when public_ip is set
    public_ip: Optional[str]
    profile_arn: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        return new_client(service, self.region)

    def stack_config(self, **changes: Any) -> dict[str, Any]:
        """The shipped Pulumi.prod.yaml document with this account's ids; `changes` set or (None)
        drop quickport-backup:* keys, e.g. baselines=None, dumps={...}."""
        shipped = REPO_ROOT / "Pulumi.prod.yaml"
        doc = yaml.safe_load(shipped.read_text()) if shipped.is_file() else {"config": {"aws:region": self.region}}
        cfg = doc["config"]
        cfg[f"{NAMESPACE}:instanceId"] = self.instance_id
        cfg[f"{NAMESPACE}:rootVolumeId"] = self.root_volume_id
        cfg[f"{NAMESPACE}:elasticIpAllocationId"] = self.allocation_id
        for baseline in cfg.get(f"{NAMESPACE}:baselines") or []:
            baseline["volumeId"] = self.root_volume_id
        for key, value in changes.items():
            if value is None:
                cfg.pop(f"{NAMESPACE}:{key}", None)
            else:
                cfg[f"{NAMESPACE}:{key}"] = copy.deepcopy(value)
        return doc

    def write_config(self, path: Path, header: str = "", **changes: Any) -> Path:
        path.write_text(header + yaml.safe_dump(self.stack_config(**changes), sort_keys=False))
        return path


def register_image(ec2, name: str = "quickport-prod-base") -> dict[str, Any]:
    """An AMI of our own (the emulator then needs none of its thousands of built-in ones)."""
    image_id = ec2.register_image(Name=name, RootDeviceName=ROOT_DEVICE, Architecture="x86_64",
                                  VirtualizationType="hvm")["ImageId"]
    return ec2.describe_images(ImageIds=[image_id])["Images"][0]


def _instance_profile(region: str) -> str:
    iam = new_client("iam", region)
    iam.create_role(RoleName=INSTANCE_ROLE, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))
    profile = iam.create_instance_profile(InstanceProfileName=INSTANCE_ROLE)["InstanceProfile"]
    iam.add_role_to_instance_profile(InstanceProfileName=INSTANCE_ROLE, RoleName=INSTANCE_ROLE)
    return profile["Arn"]


def build_instance(region: str = REGION, *, cidr: str = "10.20.0.0/16", associate_eip: bool = True,
                   root_gb: int = 20, encrypted: bool = False, with_profile: bool = False,
                   name: str = "quickport-prod (stand-in)") -> StandIn:
    """A running instance with a gp3 root volume and an Elastic IP (associated unless told not to)."""
    ec2 = new_client("ec2", region)
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr.replace(".0.0/16", ".1.0/24"),
                               AvailabilityZone=f"{region}a")["Subnet"]["SubnetId"]
    image = register_image(ec2)
    profile_arn = _instance_profile(region) if with_profile else None
    ebs = {"VolumeSize": root_gb, "VolumeType": "gp3", "Iops": 3000, "Throughput": 125, "Encrypted": encrypted}
    params: dict[str, Any] = {
        "ImageId": image["ImageId"], "InstanceType": "t3.medium", "MinCount": 1, "MaxCount": 1, "SubnetId": subnet,
        "BlockDeviceMappings": [{"DeviceName": image["RootDeviceName"], "Ebs": ebs}],
        "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}]}
    if profile_arn:
        params["IamInstanceProfile"] = {"Arn": profile_arn}
    iid = ec2.run_instances(**params)["Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    instance = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    root = next(m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]
                if m["DeviceName"] == instance["RootDeviceName"])
    address = ec2.allocate_address(Domain="vpc")
    if associate_eip:
        ec2.associate_address(InstanceId=iid, AllocationId=address["AllocationId"])
    return StandIn(region=region, vpc_id=vpc, subnet_id=subnet, image_id=image["ImageId"],
                   root_device=instance["RootDeviceName"], instance_id=iid, root_volume_id=root,
                   allocation_id=address["AllocationId"],
                   public_ip=address["PublicIp"] if associate_eip else None, profile_arn=profile_arn)


def tag_snapshot(stand_in: StandIn, name: str, **tags: str) -> str:
    """A strategy snapshot of the stand-in's root volume, tagged like `backupctl snapshot` tags one."""
    all_tags = {"Name": name, STRATEGY_TAG_KEY: STRATEGY_TAG_VALUE, "Instance": stand_in.instance_id, **tags}
    return stand_in.client("ec2").create_snapshot(VolumeId=stand_in.root_volume_id, TagSpecifications=[
        {"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in all_tags.items()]}])["SnapshotId"]


def build_vault_and_plan(region: str, vault: str, plan: str, *, min_days: int = 7, max_days: int = 35,
                         rule: Optional[dict[str, Any]] = None) -> None:
    """The backup vault with its lock, and (unless rule is {}) the daily plan's one rule into it."""
    backup = new_client("backup", region)
    backup.create_backup_vault(BackupVaultName=vault)
    backup.put_backup_vault_lock_configuration(BackupVaultName=vault, MinRetentionDays=min_days,
                                               MaxRetentionDays=max_days)
    rule = {"ScheduleExpression": "cron(0 20 * * ? *)", "Lifecycle": {"DeleteAfterDays": 7}} if rule is None else rule
    if rule:
        backup.create_backup_plan(BackupPlan={"BackupPlanName": plan, "Rules": [
            {"RuleName": "daily", "TargetBackupVaultName": vault, **rule}]})


def build_dump_bucket(region: str, bucket: str, *, hardened: bool = True,
                      object_lock: Optional[tuple[str, int]] = None,
                      prefixes: tuple[str, ...] = ("mysql", "files"),
                      binlog: Optional[tuple[str, int]] = ("binlog", 37)) -> None:
    """The dump bucket: versioned; hardened adds the public access block, SSE-KMS with a new key, the
    stack's lifecycle (30-day expiry under each prefix, binlog=(prefix, days) for the binlog segments;
    None: no binlog rule);
    object_lock=(mode, days) turns S3 Object Lock on with that default retention for every version
    (mode GOVERNANCE or COMPLIANCE), as dumps.objectLock does."""
    s3 = new_client("s3", region)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region},
                     ObjectLockEnabledForBucket=object_lock is not None)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    if object_lock is not None:
        mode, days = object_lock
        s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": mode, "Days": days}}})
    if not hardened:
        return
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    key = new_client("kms", region).create_key(Description=f"{bucket} key")["KeyMetadata"]["Arn"]
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key},
        "BucketKeyEnabled": True}]})
    # No bucket policy: the emulator evaluates bucket policies, and the stack's TLS-only statement would
    # deny every request to its plain-HTTP endpoint (audit tests stub GetBucketPolicy instead).
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "abort-incomplete-multipart-uploads", "Status": "Enabled", "Filter": {},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
        *({"ID": f"expire-{prefix}", "Status": "Enabled", "Filter": {"Prefix": f"{prefix}/"},
           "Expiration": {"Days": 30}, "NoncurrentVersionExpiration": {"NoncurrentDays": 7}}
          for prefix in prefixes),
        *([{"ID": f"expire-{binlog[0]}", "Status": "Enabled", "Filter": {"Prefix": f"{binlog[0]}/"},
            "Expiration": {"Days": binlog[1]}, "NoncurrentVersionExpiration": {"NoncurrentDays": 7}}]
          if binlog else [])]})


def build_monitoring(region: str, stack: str, database: str, vault: str, trail_bucket: str,
                     binlog_interval_seconds: Optional[int] = 30) -> list[str]:
    """What BackupMonitoring leaves: its alarms (OK in the emulator, which never evaluates them; the
    binlog ones unless binlog_interval_seconds is None, as with binlog.enabled false) and a logging
    multi-region trail into its bucket. Returns the alarm names."""
    from components.signals import alarm_specs, resource_name
    cloudwatch = new_client("cloudwatch", region)
    names = []
    for spec in alarm_specs(stack, database, vault, binlog_interval_seconds):
        names.append(resource_name(stack, spec.key))
        cloudwatch.put_metric_alarm(
            AlarmName=names[-1], Namespace=spec.namespace, MetricName=spec.metric, Statistic=spec.statistic,
            Dimensions=[{"Name": k, "Value": v} for k, v in spec.dimensions.items()], Period=spec.period,
            EvaluationPeriods=spec.evaluation_periods, Threshold=spec.threshold,
            ComparisonOperator=spec.comparison, TreatMissingData=spec.treat_missing_data)
    new_client("s3", region).create_bucket(Bucket=trail_bucket,
                                           CreateBucketConfiguration={"LocationConstraint": region})
    trail = resource_name(stack, "management-events")
    cloudtrail = new_client("cloudtrail", region)
    cloudtrail.create_trail(Name=trail, S3BucketName=trail_bucket, IsMultiRegionTrail=True,
                            EnableLogFileValidation=True)
    cloudtrail.start_logging(Name=trail)
    return names


def build_guard_rails(region: str, groups: tuple[str, ...], policy_name: str) -> str:
    """The operator guard-rail policy attached to each group (created here). Returns the policy ARN."""
    iam = new_client("iam", region)
    arn = iam.create_policy(PolicyName=policy_name, PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Action": "backup:DeleteRecoveryPoint", "Resource": "*"}]}))["Policy"]["Arn"]
    for group in groups:
        iam.create_group(GroupName=group)
        iam.attach_group_policy(GroupName=group, PolicyArn=arn)
    return arn
