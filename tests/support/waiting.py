"""Waiting for something another process or thread does, without racing it: poll a condition
until it holds, fail with what was awaited when it does not in time (never a bare sleep)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], seconds: float = 30.0, what: str = "", interval: float = 0.05) -> T:
    """Poll ``condition`` until it returns something truthy and return that; fail after
    ``seconds`` naming ``what`` was awaited."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {seconds} s waiting for {what or condition}"
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (the kernel's pick; closed again at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
