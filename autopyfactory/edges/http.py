"""HTTP sessions for PanDA and CRIC: bounded retries with backoff, optional X.509 client auth,
and a total deadline on every request.

``timeout`` (httpTimeout) bounds each connect and each read, so a server trickling one byte at a
time could hold a request for ever. :class:`DeadlineSession` therefore also bounds the whole
request, retries included, to ``deadline`` seconds (``httpTimeout x (httpRetries + 1)``), and
gives up at once when the factory is stopping: the request runs in a worker thread while the
calling thread waits in short steps, checking the deadline and ``stop_requested``. An abandoned
request's connection is closed; its worker ends at its next read (at most ``timeout`` later).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from autopyfactory import __version__

USER_AGENT = f"autopyfactory/{__version__}"
#: How often a waiting request looks at its deadline and at the stop flag (seconds).
POLL = 0.1


class RequestAborted(requests.ConnectionError):
    """The request was abandoned because the factory is stopping."""


class DeadlineExceeded(requests.Timeout):
    """No complete answer within the request's total deadline."""


class _Fetch:
    """One request in its worker thread: the answer (body read) or the error."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.response: requests.Response | None = None
        self.error: BaseException | None = None
        self.abandoned = False
        self._lock = threading.Lock()

    def run(self, send: Callable[[], requests.Response]) -> None:
        try:
            response = send()
            with self._lock:
                self.response = response
                abandoned = self.abandoned
            if abandoned:
                response.close()
                return
            _ = response.content  # read the whole body here, not in the waiting thread
        except BaseException as exc:  # noqa: BLE001  handed to the waiting thread, which raises it
            self.error = exc
        finally:
            self.done.set()

    def abandon(self) -> None:
        with self._lock:
            self.abandoned = True
            response = self.response
        if response is not None:
            response.close()


class DeadlineSession(requests.Session):
    """A session whose requests end within ``deadline`` seconds, or at once when stopping."""

    def __init__(self, deadline: float, stop_requested: Callable[[], bool] = lambda: False) -> None:
        super().__init__()
        self.deadline, self._stop_requested = deadline, stop_requested

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("stream"):
            return super().request(method, url, *args, **kwargs)
        if self._stop_requested():
            raise RequestAborted(f"{url}: not asked, the factory is stopping")
        started = time.monotonic()
        fetch = _Fetch()
        send = lambda: super(DeadlineSession, self).request(method, url, *args, **kwargs)  # noqa: E731
        threading.Thread(target=fetch.run, args=(send,), name="http-request", daemon=True).start()
        while not fetch.done.wait(POLL):
            if self._stop_requested():
                fetch.abandon()
                raise RequestAborted("request abandoned: the factory is stopping")
            if time.monotonic() - started >= self.deadline:
                fetch.abandon()
                raise DeadlineExceeded(f"no complete answer within the total deadline of {self.deadline:g} s")
        if fetch.error is not None:
            raise fetch.error
        assert fetch.response is not None
        return fetch.response


def make_session(
    retries: int,
    proxy: str = "",
    ca_path: str = "",
    backoff: float = 0.5,
    *,
    deadline: float = float("inf"),
    stop_requested: Callable[[], bool] = lambda: False,
) -> requests.Session:
    """A session retrying connection errors and 5xx answers ``retries`` times (GET only); each
    request ends within ``deadline`` seconds in total, or as soon as ``stop_requested()``."""
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=backoff,
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=frozenset({"GET"}),
        raise_on_status=False,
    )
    session = DeadlineSession(deadline, stop_requested)
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    if proxy:
        session.cert = (proxy, proxy)
    if ca_path:
        session.verify = ca_path
    return session


def total_deadline(timeout: float, retries: int) -> float:
    """The longest one PanDA/CRIC request may take: every attempt its ``timeout``."""
    return timeout * (retries + 1)
