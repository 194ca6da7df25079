"""The README stays what it is for: what the project is, the quick start with the test command CI
runs, and the map of the documentation (tests/test_docs.py checks the documentation itself)."""

from __future__ import annotations

from tests.support.paths import REPO

README = (REPO / "README.md").read_text()


def test_the_quick_start_is_the_demo() -> None:
    assert "\n    pip install '.[monitor]' && autopyfactory demo\n" in README


def test_the_test_command_is_what_ci_runs():
    ci = (REPO / ".ci" / "run").read_text()
    assert (
        "\n    pip install -e '.[test]' && python -m autopyfactory.demo.pilot3_tarball; python -m pytest\n"
        in README
    )
    assert "python -m pip install -q -e '.[test]'" in ci
    assert "\npython -m autopyfactory.demo.pilot3_tarball || true\n" in ci  # a failed fetch only skips tests
    assert "\npython -m pytest\n" in ci


def test_ci_points_at_the_readme_section_that_has_the_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert '(README.md, "Running the tests")' in ci
    section = README.split("\n## Running the tests\n", 1)[1].split("\n## ", 1)[0]
    assert "python -m pytest" in section


def test_the_readme_stays_a_short_map():
    """The operator guide and the reference live in docs/; the README only points there."""
    assert len(README.splitlines()) <= 200
    assert "<!-- config-reference:start -->" not in README
    assert "](docs/index.md)" in README
