"""One definition of the project's namespace and the tags the strategy relies on.

The guard-rails IAM policy protects what carries STRATEGY_TAGS; the CLI and the baselines tag every
snapshot with them; the restore commands mark what they are doing with the quickport:* tags. (The
policy pack runs in its own environment and keeps its own copy of the namespace.)
"""
from __future__ import annotations

NAMESPACE = "quickport-backup"

STRATEGY_TAG_KEY = "Strategy"
STRATEGY_TAG_VALUE = NAMESPACE
STRATEGY_TAGS = {STRATEGY_TAG_KEY: STRATEGY_TAG_VALUE}

RESTORE_MARKER_TAG = "quickport:restore-in-progress"     # on the instance while a restore runs
REPLACED_TAG = "quickport:replaced-by-restore"           # on a root volume a restore took out of service
RESTORED_FROM_TAG = "quickport:restored-from"            # on a volume created from a snapshot
RESTORE_RUN_TAG = "quickport:restore-run"                # on everything a run created (cleanup key)
SNAPSHOT_CLAIM_TAG = "quickport:snapshot-claim"          # on the instance while a run creates a snapshot
# On every CLI snapshot: until when it is kept (ISO 8601 UTC); `backupctl prune` deletes it after that.
RETAIN_UNTIL_TAG = "RetainUntil"
