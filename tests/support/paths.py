"""Where the tests find the repository and their data files, whatever folder a test sits in."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
CRIC_DUMP = DATA / "cric_dump.json"
