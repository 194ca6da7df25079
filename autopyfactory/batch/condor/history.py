"""``condor_history``: the job ads of this factory's pilots that left the queue."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from autopyfactory.batch.condor.command import Schedd, run_condor
from autopyfactory.batch.interface import BatchError


def history_ads(schedd: Schedd, args: Sequence[str], timeout: float) -> list[dict[str, Any]]:
    """The ads ``condor_history -json <args>`` prints for ``schedd`` (empty output: none).

    Raises BatchError when the tool fails or its output is not a JSON list; entries that are not
    objects are dropped.
    """
    text = run_condor("condor_history", schedd, [*args, "-json"], timeout)
    try:
        ads = json.loads(text) if text.strip() else []
    except ValueError as exc:
        raise BatchError(f"condor_history ({schedd}): unparsable output ({exc}): {text[:80]!r}") from None
    if not isinstance(ads, list):
        raise BatchError(f"condor_history ({schedd}): expected a JSON list of job ads")
    return [ad for ad in ads if isinstance(ad, dict)]
