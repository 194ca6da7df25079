"""The panda-pilot sdist for the tests that run the real pilot 3, from the cache only: the tests
never reach beyond 127.0.0.1. `.ci/run` (and the README's test command) fetch it beforehand with
``python -m autopyfactory.demo.pilot3_tarball``."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopyfactory.demo.pilot3_tarball import PILOT3_VERSION, cache_dir, find_sdist


def cached_pilot3_sdist() -> Path:
    found = find_sdist(cache_dir())
    if found is None:
        pytest.skip(
            f"no panda-pilot {PILOT3_VERSION} sdist in {cache_dir()}: fetch it with"
            " `python -m autopyfactory.demo.pilot3_tarball` (.ci/run does)"
        )
    return found
