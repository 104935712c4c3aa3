"""quickport-backup: the declared side of the production backup strategy.

`pulumi preview` / `pulumi up` run this file; `scripts/backupctl preview` runs it on the mock engine.
"""
import os
import sys

# Pulumi runs the program with the project directory as cwd; make `components` importable from any cwd.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from components.program import main  # noqa: E402

main()
