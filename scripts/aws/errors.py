"""The one place that turns an AWS failure into a line a person can act on."""
from __future__ import annotations

from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

# What a call can raise when AWS (or an emulator) refuses or cannot answer. ResponseParserError is
# no BotoCoreError: it is what an endpoint answering with an HTML page (a proxy, an emulator
# lacking the API) gives, and it is still an AWS failure, not a crash. Boto3Error: what s3transfer
# raises once its own retries of a download are spent (RetriesExceededError).
AWS_ERRORS = (BotoCoreError, ClientError, ResponseParserError, Boto3Error)

# Error codes meaning "the thing is not there".
NOT_FOUND_CODES = frozenset({
    "ResourceNotFoundException", "NoSuchBucket", "NoSuchKey", "InvalidSnapshot.NotFound",
    "InvalidVolume.NotFound", "InvalidInstanceID.NotFound"})


def is_aws_error(exc: BaseException) -> bool:
    return isinstance(exc, AWS_ERRORS)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError ('' for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def describe(exc: BaseException, *, operation: bool = False) -> str:
    """One line for an AWS failure.

    Default (the CLI's error line, restore and log messages): `Code: Message` for an AWS error
    answer, else the exception's first line. With `operation` (audit's could-not-check reasons): the
    API's name first, and an endpoint that answers garbage or a bare HTTP 5xx is said to be one that
    probably lacks the API (an emulator, a proxy)."""
    response = getattr(exc, "response", None)
    if not operation:
        if isinstance(response, dict) and "Error" in response:
            err = response["Error"]
            return f"{err.get('Code', 'Error')}: {err.get('Message', '')}".strip()
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, ResponseParserError):
        return "unreadable response from the endpoint (it does not implement this API?)"
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code, status = str(err.get("Code", "")), exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code.isdigit() or (status and status >= 500 and not err.get("Message")):
            return f"{exc.operation_name}: HTTP {code or status} from the endpoint (it does not implement this API?)"
        return f"{exc.operation_name}: {code}: {err.get('Message', '')}".rstrip(": ")
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
