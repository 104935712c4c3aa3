"""Domain steps of the operator CLI: they read like the runbook, call scripts/aws/ for AWS, return
dataclasses, and never print or parse argv (progress and the operations log go through the
`Session` they are given, see scripts/workflows/base.py)."""
