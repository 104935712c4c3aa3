"""The configuration error every layer reports the same way (exit 2 in the CLI, a RunError in Pulumi)."""
from __future__ import annotations


class ConfigError(ValueError):
    """A stack configuration value is wrong. str() is the one line shown to the user."""
