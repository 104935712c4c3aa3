"""Recycle Bin reads behind `backupctl audit`."""
from __future__ import annotations

from typing import Any


def recycle_bin_rules(rbin, resource_type: str = "EBS_SNAPSHOT") -> list[dict[str, Any]]:
    """GetRule of every retention rule for the resource type (ListRules omits tags and status)."""
    rules = []
    for page in rbin.get_paginator("list_rules").paginate(ResourceType=resource_type):
        for summary in page.get("Rules", []):
            rules.append(rbin.get_rule(Identifier=summary["Identifier"]))
    return rules
