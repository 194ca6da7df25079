"""systemd's sd_notify protocol in a few lines: READY, STATUS, WATCHDOG and STOPPING messages.

The socket comes from ``$NOTIFY_SOCKET`` (read once by the caller and passed in); without it every
call does nothing, so the factory runs the same way outside systemd.
"""

from __future__ import annotations

import logging
import socket

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, socket_path: str | None) -> None:
        self._address = socket_path or ""
        if self._address.startswith("@"):  # abstract namespace
            self._address = "\0" + self._address[1:]

    def send(self, *fields: str) -> None:
        if not self._address:
            return
        message = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(1.0)
                sock.sendto(message, self._address)
        except OSError as exc:
            log.debug("sd_notify %s: %s", fields, exc)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}", "WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def reloading(self) -> None:
        self.send("RELOADING=1")
