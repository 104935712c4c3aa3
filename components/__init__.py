"""Pulumi components that declare the QuickPort backup strategy (see README, "What each piece enforces")."""
