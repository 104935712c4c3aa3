"""QuickPort backup strategy as CrossGuard policies. `policy_pack.POLICIES` is what __main__ serves."""
