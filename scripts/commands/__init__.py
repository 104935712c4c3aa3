"""backupctl subcommands: every module here defines register(subparsers)."""
