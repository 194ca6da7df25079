"""HTTP sessions for PanDA and CRIC: bounded retries with backoff, optional X.509 client auth.

Every request made with these sessions must still pass an explicit ``timeout``; the session only
adds retries (urllib3 ``Retry``) and credentials.
"""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from autopyfactory import __version__

USER_AGENT = f"autopyfactory/{__version__}"


def make_session(retries: int, proxy: str = "", ca_path: str = "", backoff: float = 0.5) -> requests.Session:
    """A session retrying connection errors and 5xx answers ``retries`` times (GET only)."""
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
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    if proxy:
        session.cert = (proxy, proxy)
    if ca_path:
        session.verify = ca_path
    return session
