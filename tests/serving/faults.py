"""An HTTP proxy in front of moto that fails chosen AWS API actions (by ``X-Amz-Target``) a set number of
times with a 500, so one call of the code under test fails while the server's state stays real."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

from tests.servers import ScriptedProxy


class ActionFaultProxy(ScriptedProxy):
    def __init__(self, upstream: str, fail: dict[str, int]) -> None:
        super().__init__(upstream)
        self.fail = dict(fail)
        self.served: list[str] = []

    def fault(self, request: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes] | None:
        action = (request.headers.get("X-Amz-Target") or "").rsplit(".", 1)[-1]
        if self.fail.get(action, 0) <= 0:
            return None
        self.fail[action] -= 1
        self.served.append(action)
        payload = b'{"__type": "InternalFailure", "message": "injected"}'
        return 500, {"Content-Type": "application/x-amz-json-1.1"}, payload
