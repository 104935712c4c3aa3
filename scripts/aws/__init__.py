"""The operator CLI's only code that imports boto3 or botocore (besides the agent, which runs on the
instance). Thin functions, one AWS concept each, taking a client first and returning AWS's own
shapes; no printing (progress goes through a callback). A failure a person must act on raises
CommandError with one line; any other botocore error propagates and `scripts.aws.errors.describe`
turns it into one line."""
