"""The one place that turns an AWS failure into a line a person can act on."""
from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

# What a call can raise when AWS (or an emulator) refuses or cannot answer. ResponseParserError is
# no BotoCoreError: it is what an endpoint answering with an HTML page (a proxy, an emulator
# lacking the API) gives, and it is still an AWS failure, not a crash.
AWS_ERRORS = (BotoCoreError, ClientError, ResponseParserError)

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
    """One line: `Code: Message` (with `operation`, prefixed by the API's name, as audit lists
    could-not-check reasons). An endpoint that answers garbage or a bare HTTP 5xx is said to be one."""
    if isinstance(exc, ResponseParserError):
        first = str(exc).splitlines()[0] if str(exc) else "no details"
        return f"unreadable response from the endpoint (does it implement this API?): {first}"
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code, text = str(err.get("Code", "")), str(err.get("Message", "") or "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        prefix = f"{exc.operation_name}: " if operation else ""
        if code.isdigit() or (status and status >= 500 and not text):
            return f"{exc.operation_name}: HTTP {code or status} from the endpoint (does it implement this API?)"
        return (prefix + f"{code or 'Error'}: {text}").rstrip(": ")
    text = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, BotoCoreError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
