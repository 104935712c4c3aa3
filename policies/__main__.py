"""QuickPort backup policy pack: `pulumi preview --policy-pack policies` (or `backupctl preview`)."""
from pulumi_policy import EnforcementLevel, PolicyPack

from quickport_policies.policy_pack import PACK_NAME, POLICIES

PolicyPack(name=PACK_NAME, policies=POLICIES, enforcement_level=EnforcementLevel.MANDATORY)
