"""The documentation stays true: the site builds without a warning, the generated configuration
reference is current, every path, command and section it names exists, and no issue-tracker number
appears anywhere in the tree (a reader has no tracker: the text gives the reason itself)."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autopyfactory.cli.main import build_parser as factory_parser
from autopyfactory.cli.reference import REFERENCE_END, REFERENCE_START
from autopyfactory.config.schema import reference_markdown
from autopyfactory.monitor_service.cli import build_parser as monitor_parser
from tests.support.paths import REPO

DOCS = REPO / "docs"
REFERENCE = DOCS / "configuration-reference.md"


def documentation() -> dict[str, str]:
    """The README and every page of the site, by path relative to the repository."""
    files = [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]
    return {str(path.relative_to(REPO)): path.read_text() for path in files}


def tracked_text_files() -> dict[str, str]:
    """Every text file git tracks, by path (binary files left out)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    texts = {}
    for name in filter(None, listed.split("\0")):
        path = REPO / name
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            texts[name] = data.decode()
        except UnicodeDecodeError:
            continue
    return texts


# --- the site ------------------------------------------------------------------------------------


def test_the_site_builds_without_a_warning(tmp_path: Path) -> None:
    """``mkdocs.yml`` makes broken links and anchors, and pages left out of the navigation,
    warnings; ``--strict`` fails the build on any."""
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr, result.stderr
    assert (site / "index.html").is_file()
    assert (site / "configuration-reference" / "index.html").is_file()


def test_every_page_is_on_the_readme_map() -> None:
    readme = (REPO / "README.md").read_text()
    pages = sorted(str(p.relative_to(REPO)) for p in DOCS.rglob("*.md") if p.name != "index.md")
    assert pages
    missing = [page for page in pages if f"]({page})" not in readme]
    assert not missing, f"README's documentation table has no link to {missing}"


# --- the generated configuration reference ---------------------------------------------------------


def test_the_configuration_reference_is_current() -> None:
    text = REFERENCE.read_text()
    embedded = text[text.index(REFERENCE_START) + len(REFERENCE_START) : text.index(REFERENCE_END)]
    assert embedded.strip() == reference_markdown().strip(), (
        "run: autopyfactory config-reference --write docs/configuration-reference.md"
    )


def config_reference(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "autopyfactory", "config-reference", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


def test_config_reference_write_replaces_the_block_and_nothing_else(tmp_path: Path) -> None:
    page = tmp_path / "reference.md"
    before, after = "# Reference\n\nWritten by hand.\n\n", "\n\nAlso by hand.\n"
    page.write_text(f"{before}{REFERENCE_START}\n| stale | table |\n{REFERENCE_END}{after}")
    assert config_reference("--write", str(page)).returncode == 0
    written = page.read_text()
    block = f"{REFERENCE_START}\n\n{reference_markdown().rstrip()}\n\n{REFERENCE_END}"
    assert written == f"{before}{block}{after}"
    assert config_reference("--write", str(page)).returncode == 0
    assert page.read_text() == written


def test_config_reference_write_refuses_a_file_without_the_block(tmp_path: Path) -> None:
    page = tmp_path / "notes.md"
    page.write_text("# Notes\n")
    result = config_reference("--write", str(page))
    assert result.returncode == 2
    assert f"{page} has no {REFERENCE_START} ... {REFERENCE_END} block" in result.stderr
    assert page.read_text() == "# Notes\n"


# --- what the documentation names exists -----------------------------------------------------------

#: A path in the source tree as the docs write it: ``autopyfactory/domain/policy.py``,
#: ``tests/htcondor/``. Not one inside an absolute path or URL (``/etc/autopyfactory/...``,
#: ``~autopyfactory/...``) nor a pattern (``tests/<area>``, ``cron/*.sh``).
TREE_PATH = re.compile(
    r"(?<![\w/.~<-])(?:autopyfactory|tests|benchmarks|etc|cron|wrappers|packaging|docs|bin)/[\w.-]+(?:/[\w.-]+)*"
)


def named_paths(text: str) -> set[str]:
    return {match.group(0).rstrip(".") for match in TREE_PATH.finditer(text)}


def test_named_paths_are_found_as_written() -> None:
    text = (
        "See `autopyfactory/domain/policy.py`, `tests/htcondor/` and [x](docs/demo.md#top). "
        "Not /etc/autopyfactory/factory.conf, ~autopyfactory/.condor, tests/<area>, cron/*.sh, "
        "https://example.org/autopyfactory/x; the wrapper is wrappers/runpilot3-wrapper.sh."
    )
    assert named_paths(text) == {
        "autopyfactory/domain/policy.py",
        "tests/htcondor",
        "docs/demo.md",
        "wrappers/runpilot3-wrapper.sh",
    }


def docs_and_pointers() -> dict[str, str]:
    """The documentation, and the files whose comments point into the tree or the docs."""
    texts = documentation()
    for pattern in ("etc/**/*", "mkdocs.yml", "setup.cfg", ".ci/run"):
        for path in sorted(REPO.glob(pattern)):
            if path.is_file():
                texts[str(path.relative_to(REPO))] = path.read_text()
    return texts


def test_every_path_the_docs_name_exists() -> None:
    missing = sorted(
        f"{name}: {path}"
        for name, text in docs_and_pointers().items()
        for path in named_paths(text)
        if not (REPO / path).exists()
    )
    assert not missing, missing


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


#: ``autopyfactory check`` in backticks, or at the start of a line of a code block.
FACTORY_COMMAND = re.compile(r"(?:`|^[ \t]*)autopyfactory ([a-z][a-z0-9-]*)(?:\s+([a-z][a-z0-9-]*))?", re.M)
MONITOR_COMMAND = re.compile(r"autopyfactory-monitor ([a-z][a-z0-9-]*)")


def test_every_command_the_docs_name_exists() -> None:
    commands = subcommands(factory_parser())
    wrong = set()
    for text in documentation().values():
        for command, action in FACTORY_COMMAND.findall(text):
            actions = subcommands(commands[command]) if command in commands else {}
            if command not in commands or (actions and action not in actions):
                wrong.add(f"autopyfactory {command} {action}".strip())
    assert not wrong, wrong
    monitor_commands = subcommands(monitor_parser())
    named = {c for text in documentation().values() for c in MONITOR_COMMAND.findall(text)}
    assert {"serve", "add-factory", "expire", "clean", "migrate"} <= named
    assert named <= set(monitor_commands), named - set(monitor_commands)


#: A pointer to a section: ``README.md, "Running the tests"`` or ``docs/monitor.md, "Tokens"``
#: (a comment in .ci/run, etc/, setup.py ... or a page; it may go on in the next comment line).
SECTION_POINTER = re.compile(r"\b((?:docs/[\w-]+|README)(?:\.md)?),? \"([^\"]+)\"")


def headings(text: str) -> set[str]:
    return {_plain(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def _plain(title: str) -> str:
    """A section's title as a pointer may write it: without backticks, case or line breaks (a
    pointer in a comment may go on in the next comment line)."""
    return re.sub(r"\s*\n\s*#?\s*", " ", title).replace("`", "").strip().lower()


def test_every_section_a_pointer_names_exists() -> None:
    pointers = [
        (name, target, section)
        for name, text in tracked_text_files().items()
        for target, section in SECTION_POINTER.findall(text)
    ]
    assert any(name == ".ci/run" for name, _, _ in pointers), ".ci/run no longer names the README's section"
    wrong = []
    for name, target, section in pointers:
        page = REPO / (target if target.endswith(".md") else f"{target}.md")
        if not page.is_file() or _plain(section) not in headings(page.read_text()):
            wrong.append(f'{name}: {target}, "{section}"')
    assert not wrong, wrong


# --- no issue numbers --------------------------------------------------------------------------------

#: A reference to the issue tracker: the word issue (or issues) followed by a number, with or
#: without a hash sign, or an item number N.M (M from 1) alone in parentheses, one or several (the
#: examples below). Version numbers (HTCondor 25.0, pilot 3.7.0.36, a parenthesis that goes on after the
#: number) and values in code (``close(1.0)``, ``(30.0, ...``) are not.
ISSUE_REFERENCE = re.compile(
    r"\bissues?\s*#?\s*\d|(?<![\w.])\([1-9]\d\.[1-9]\d?(?:\s*(?:,|and)\s*[1-9]\d\.[1-9]\d?)*\)",
    re.IGNORECASE,
)


@pytest.mark.parametrize(
    "text",
    [
        f"Issue {13}.{12}: NaN, infinities",
        f"the per-label path as it was before issue {17} (a Pilot",
        f"# issue {14}.{4}: values as an operator writes them",
        f"(issues {13} and {14})",
        f"CE flavours HTCondor cannot submit to (issue #{16})",
        f"fails or hangs after it printed ids ({13}.{3}), the printed",
        f"the valid labels ({13}.{7}, {13}.{16})",
        f"kept even when it fails (issue\n    {13}.{3}); a label",
    ],
)
def test_an_issue_reference_is_recognised(text: str) -> None:
    assert ISSUE_REFERENCE.search(text)


@pytest.mark.parametrize(
    "text",
    [
        "HTCondor 25.0 prints a warning",
        "== (37.5, 25.0)",
        'The grid types condor_submit accepts (25.0: "Must be one of',
        "PILOT3_VERSION = '3.7.0.36' and Python 3.11",
        "panda-server ≥ 0.7.0, panda-server 1.0.4",
        "client.close(1.0)",
        '(30.0, CredentialState.TOO_SHORT, "30s left")',
        "recoverable hold #2 after 700 s",
        "a known issue of HTCondor",
    ],
)
def test_a_version_or_a_value_is_not_an_issue_reference(text: str) -> None:
    assert not ISSUE_REFERENCE.search(text)


def lines_citing_an_issue(text: str) -> list[int]:
    """The numbers of the lines where a reference starts (one may run on to the next line)."""
    return sorted({text.count("\n", 0, match.start()) + 1 for match in ISSUE_REFERENCE.finditer(text)})


def test_no_issue_numbers_anywhere() -> None:
    found = [
        f"{name}:{line}: {text.splitlines()[line - 1].strip()}"
        for name, text in tracked_text_files().items()
        for line in lines_citing_an_issue(text)
    ]
    advice = "a reader has no issue tracker: say the reason itself instead of the issue number"
    assert not found, "\n".join([advice, *found])
