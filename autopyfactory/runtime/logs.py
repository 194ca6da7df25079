"""Logging set-up for the factory process.

With ``--log-file`` the log goes to a :class:`logging.handlers.WatchedFileHandler`, which reopens
the file when logrotate has moved it away, so rotation needs no restart and no signal. Without it
the log goes to stderr (the journal, under systemd).
"""

from __future__ import annotations

import logging
import logging.handlers
import sys

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(log_file: str, verbose: bool) -> logging.Handler:
    """Configure the root logger; returns the handler (its stream must survive daemonizing)."""
    handler: logging.Handler = (
        logging.handlers.WatchedFileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("urllib3", "requests"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler


def stream_fileno(handler: logging.Handler) -> list[int]:
    """The file descriptor(s) a daemon must keep open for this handler."""
    stream = getattr(handler, "stream", None)
    try:
        return [stream.fileno()] if stream is not None else []
    except (OSError, ValueError):
        return []
