"""SSM: Run Command on a helper instance, and the dump password parameter."""
from __future__ import annotations

import time
from typing import Any, Callable

from botocore.exceptions import ClientError, WaiterError

from scripts.aws.errors import error_code
from scripts.aws.waits import Progress, noop, waiter_config
from scripts.errors import CommandError


def send_shell_script(ssm, instance_id: str, script: str, *, comment: str, execution_timeout: int,
                      output_bucket: str, output_prefix: str, output_region: str,
                      ready_timeout: float, poll_seconds: float, progress: Progress = noop,
                      clock: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], None] = time.sleep) -> str:
    """SendCommand AWS-RunShellScript with the full stdout/stderr written to S3 by the SSM agent
    (the API returns only the first 24,000 characters). A fresh instance's agent needs a minute or
    two to register: InvalidInstanceId is retried until `ready_timeout`. Returns the command id."""
    deadline = clock() + ready_timeout
    announced = False
    while True:
        try:
            return ssm.send_command(
                InstanceIds=[instance_id], DocumentName="AWS-RunShellScript", Comment=comment[:100],
                Parameters={"commands": [script], "executionTimeout": [str(execution_timeout)]},
                TimeoutSeconds=max(30, min(2592000, int(ready_timeout))),
                OutputS3BucketName=output_bucket, OutputS3KeyPrefix=output_prefix,
                OutputS3Region=output_region)["Command"]["CommandId"]
        except ClientError as e:
            if error_code(e) != "InvalidInstanceId" or clock() >= deadline:
                if error_code(e) == "InvalidInstanceId":
                    raise CommandError(
                        f"instance {instance_id} is not managed by SSM after {ready_timeout / 60:g} "
                        f"minutes: its instance profile needs AmazonSSMManagedInstanceCore and the "
                        f"subnet needs a route to the SSM endpoints") from None
                raise
            if not announced:
                progress(f"waiting for the SSM agent on {instance_id} to register")
                announced = True
            sleep(min(poll_seconds, max(0.0, deadline - clock())))


def wait_command(ssm, command_id: str, instance_id: str, timeout: float, poll_seconds: float) -> dict[str, Any]:
    """Wait (boto3 `command_executed` waiter) for the command on the instance; return the
    invocation. CommandError with the status and the tail of stderr when it did not succeed."""
    try:
        ssm.get_waiter("command_executed").wait(CommandId=command_id, InstanceId=instance_id,
                                                WaiterConfig=waiter_config(timeout, poll_seconds))
    except WaiterError:
        pass  # the invocation below says why (Failed, TimedOut, Cancelled, or still running)
    invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    if invocation.get("Status") != "Success":
        err = (invocation.get("StandardErrorContent") or "").strip().splitlines()
        raise CommandError(f"SSM command {command_id} on {instance_id} ended {invocation.get('Status')} "
                           f"(exit {invocation.get('ResponseCode')}): {err[-1] if err else 'no stderr'}")
    return invocation
