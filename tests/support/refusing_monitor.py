"""A monitor stand-in on pytest-httpserver that checks the factory's token as the real monitor
does: every API call without ``Authorization: Bearer <token>`` is refused (401, or 403)."""

from __future__ import annotations

import re

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response


class TokenChecking:
    """Answers every API call with ``refusal`` unless it carries ``Bearer <token>``; the token
    may change while it serves (the monitor's operator registering the factory)."""

    def __init__(self, token: str, refusal: int = 401) -> None:
        self.token, self.refusal = token, refusal

    def __call__(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return Response("invalid token", status=self.refusal)
        return Response("{}", content_type="application/json")


def serve_api(server: HTTPServer, checking: TokenChecking) -> str:
    """Answer ``/api/...`` on ``server`` with ``checking``; the API root for monitorURL."""
    server.expect_request(re.compile("/api/.*")).respond_with_handler(checking)
    return str(server.url_for("/api"))


def announced(server: HTTPServer) -> list[str]:
    """The pilot ids the monitor accepted (``PUT /jobs`` answered 200), in order."""
    return [
        item["cid"]
        for request, response in server.log
        if request.path == "/api/jobs" and response.status_code == 200
        for item in request.get_json()
    ]


def refusals(server: HTTPServer) -> int:
    """API calls refused for their token so far."""
    return sum(response.status_code in (401, 403) for _request, response in server.log)
