"""The real PanDA pilot 3 as a ``pilot3.tar.gz``, built from the ``panda-pilot`` sdist.

Installing ``panda-pilot`` with pip installs only its ``pilot`` package, not ``pilot.py``, so the
demo and the tests build the tarball every ATLAS wrapper downloads (``pilot3/pilot.py``,
``pilot3/pilot/...``, ``pilot3/PILOTVERSION``) from the source distribution instead.
:func:`download_sdist` fetches it with pip (``autopyfactory demo --pilot3``, and
``python -m autopyfactory.demo.pilot3_tarball``, which `.ci/run` and the README's test command run before
the tests); :func:`find_sdist` finds one already downloaded. The tests themselves only look in the
cache (they never reach beyond 127.0.0.1) and skip, saying how to fetch it, when it is not there.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

#: The pilot 3 release the tests and the demo use (its argument grammar is what the factory renders).
PILOT3_VERSION = "3.7.0.36"


def cache_dir() -> Path:
    """Where a downloaded sdist is kept: ``$APF_PILOT3_CACHE`` or ``~/.cache/autopyfactory``."""
    configured = os.environ.get("APF_PILOT3_CACHE", "")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME", "") or str(Path.home() / ".cache")
    return Path(base) / "autopyfactory"


def find_sdist(directory: Path, version: str = PILOT3_VERSION) -> Path | None:
    """The sdist of ``version`` in ``directory``, if it was downloaded before."""
    for name in (f"panda-pilot-{version}.tar.gz", f"panda_pilot-{version}.tar.gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def download_sdist(directory: Path, version: str = PILOT3_VERSION, timeout: float = 300) -> Path:
    """Download the ``panda-pilot`` sdist with pip into ``directory`` (kept for the next time).

    Raises RuntimeError with pip's message when it cannot be had (no index reachable, ...).
    """
    found = find_sdist(directory, version)
    if found is not None:
        return found
    directory.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
    command += ["--dest", str(directory), f"panda-pilot=={version}"]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"pip download panda-pilot=={version}: {exc}") from None
    found = find_sdist(directory, version)
    if proc.returncode != 0 or found is None:
        message = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no sdist"]
        raise RuntimeError(f"pip download panda-pilot=={version} failed: {message[0]}")
    return found


def tarball_from_sdist(sdist: Path) -> bytes:
    """``pilot3.tar.gz`` (gzip bytes): the sdist's ``pilot.py``, ``pilot/`` and ``PILOTVERSION``
    under ``pilot3/``, the layout of the tarball ATLAS wrappers download."""
    out = io.BytesIO()
    with tarfile.open(sdist, "r:gz") as source, tarfile.open(fileobj=out, mode="w:gz") as target:
        found = False
        for member in source.getmembers():
            parts = member.name.split("/", 1)
            if len(parts) != 2 or not _wanted(parts[1]) or not (member.isfile() or member.isdir()):
                continue
            copy = tarfile.TarInfo("pilot3/" + parts[1])
            copy.size, copy.mode, copy.mtime, copy.type = member.size, member.mode, member.mtime, member.type
            data = source.extractfile(member) if member.isfile() else None
            target.addfile(copy, data)
            found = found or parts[1] == "pilot.py"
        if not found:
            raise RuntimeError(f"{sdist}: no pilot.py in this sdist")
    return out.getvalue()


def _wanted(relative: str) -> bool:
    return relative in ("pilot.py", "PILOTVERSION") or relative.startswith("pilot/")


def main() -> int:
    """Fetch the sdist into :func:`cache_dir` (for the tests); 0 also when it was there already."""
    try:
        print(download_sdist(cache_dir()))
    except RuntimeError as exc:
        print(f"pilot 3 not fetched, its tests will skip: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
