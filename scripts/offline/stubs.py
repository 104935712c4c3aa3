"""Answers for the APIs the emulator lacks, checked against AWS's own service model.

`PartialStubber` is botocore's Stubber limited to the named operations: requests to them are checked
against the expected parameters, queued responses are validated against the operation's output shape,
and `always()` gives a standing answer (validated the same way) for an operation called any number of
times. Every other operation on the same client still reaches the emulator. With passthrough=True a
named operation with nothing queued for it reaches the emulator too (a fault injected once).
"""
from __future__ import annotations

import copy
from typing import Any, Iterable

from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber


class PartialStubber(Stubber):
    def __init__(self, client, operations: Iterable[str] = (), *, passthrough: bool = False):
        super().__init__(client)
        # botocore registers every Stubber's handlers under the same ids, so a second stubber on
        # the same client would silently replace nothing: give each its own.
        self._event_id = f"{self._event_id}-{id(self)}"
        self._expected_params_event_id = f"{self._expected_params_event_id}-{id(self)}"
        self.operations = set(operations)
        self.passthrough = passthrough
        self._standing: dict[str, dict[str, Any]] = {}

    def always(self, method: str, response: dict[str, Any]) -> "PartialStubber":
        """Answer every call of `method` (a boto3 method name) with `response`."""
        operation = self.client.meta.method_to_api_mapping[method]
        self._validate_operation_response(operation, response)
        self._standing[operation] = response
        self.operations.add(operation)
        return self

    def _stubbed(self, name: str) -> str:
        """How to answer operation `name`: 'queue', 'standing' or '' (the emulator answers)."""
        if name not in self.operations:
            return ""
        if self._queue and self._queue[0]["operation_name"] == name:
            return "queue"
        if name in self._standing:
            return "standing"
        return "" if self.passthrough else "queue"   # queue: botocore reports the unexpected call

    def _assert_expected_params(self, model, params, context, **kwargs):
        if self._stubbed(model.name) == "queue":
            return super()._assert_expected_params(model, params, context, **kwargs)

    def _get_response_handler(self, model, params, context, **kwargs):
        how = self._stubbed(model.name)
        if how == "standing":
            return AWSResponse(None, 200, {}, None), copy.deepcopy(self._standing[model.name])
        if how == "queue":
            return super()._get_response_handler(model, params, context, **kwargs)
        return None
