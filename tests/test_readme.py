"""The README's generated parts are current, and its commands exist."""

from __future__ import annotations

import re

from autopyfactory.cli.main import build_parser
from autopyfactory.config.schema import reference_markdown
from tests.support.paths import REPO

README = (REPO / "README.md").read_text()


def test_configuration_reference_is_current():
    start, end = "<!-- config-reference:start -->", "<!-- config-reference:end -->"
    embedded = README[README.index(start) + len(start) : README.index(end)]
    assert embedded.strip() == reference_markdown().strip(), (
        "run: autopyfactory config-reference --readme README.md"
    )


def test_every_autopyfactory_command_in_the_readme_exists():
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    used = set(re.findall(r"`autopyfactory ([a-z][a-z0-9-]+)", README))
    assert used, "the README names no command"
    assert used <= set(choices), used - set(choices)


def test_the_test_command_is_what_ci_runs():
    ci = (REPO / ".ci" / "run").read_text()
    assert (
        "pip install -e '.[test]' && python -m autopyfactory.demo.pilot3_tarball; python -m pytest" in README
    )
    assert "python -m pip install -q -e '.[test]'" in ci
    assert "\npython -m autopyfactory.demo.pilot3_tarball || true\n" in ci  # a failed fetch only skips tests
    assert "\npython -m pytest\n" in ci
