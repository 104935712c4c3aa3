"""Wires the components together and exports the ids a person needs."""
from __future__ import annotations

import pulumi

from components.config import StackConfig


def declare_stack(cfg: StackConfig) -> None:
    pulumi.export("instanceId", cfg.instance_id)
