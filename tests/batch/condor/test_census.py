"""Parsing and counting ``condor_q -json`` output (shapes as the real tool prints them)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from autopyfactory.batch.condor.census import (
    CENSUS_ATTRIBUTES,
    AdStream,
    ScheddCensus,
    census_query,
    count_by_label,
    factory_constraint,
    parse_ads,
    read_census,
)
from autopyfactory.batch.condor.command import Schedd
from autopyfactory.batch.interface import BatchError
from autopyfactory.domain.model import JobStatus, Supply
from tests.support.paths import DATA

FIXTURE = DATA / "condor" / "condor_q_factory.json"


def test_real_shape_is_parsed():
    pilots = parse_ads(FIXTURE.read_text(), "condor_q")
    assert [p.job_id for p in pilots] == ["4711.0", "4711.1", "4712.0", "4713.0", "4714.0"]
    held = pilots[2]
    assert held.status is JobStatus.HELD
    assert held.hold_reason_code == 2
    assert held.hold_reason.startswith("Error from ce504")
    assert pilots[0].hold_reason_code is None


def test_counts_per_label():
    counts = count_by_label(parse_ads(FIXTURE.read_text(), "condor_q"))
    assert counts == {
        "CERN-ce503.cern.ch-share": Supply(idle=1, running=1, held=0, total=2),
        # held 1, transferring output 1 (in the total), removed 1 (leaving: not counted)
        "CERN-ce504.cern.ch-share": Supply(idle=0, running=0, held=1, total=2),
    }


@pytest.mark.parametrize("empty", ["", "\n", "   \n"])
def test_empty_output_means_no_pilots(empty):
    # condor_q -json prints nothing at all when no job matches the constraint
    assert parse_ads(empty, "condor_q") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"ClusterId": 1,', "unparsable output"),
        ('{"ClusterId": 1}', "expected a JSON list"),
        ("[1, 2]", "a job ad is a int"),
        ('[{"ClusterId": 1, "ProcId": 0, "JobStatus": 9}]', "bad job ad"),
        ('[{"ClusterId": 1, "ProcId": 0, "JobStatus": "1"}]', "JobStatus='1' is not an integer"),
        ('[{"ClusterId": 1, "JobStatus": 1}]', "no ProcId"),
        ("Error: communication error\n", "unparsable output"),
    ],
)
def test_garbage_is_an_error_not_zero_pilots(text, message):
    with pytest.raises(BatchError, match=message):
        parse_ads(text, "condor_q")


def test_constraint_quotes_the_factory_id():
    assert factory_constraint("my-factory") == 'FactoryId == "my-factory"'
    assert factory_constraint('evil" || true || "') == 'FactoryId == "evil\\" || true || \\""'


# ---- the cycle's census: one pass, objects only for what housekeeping needs --------------------


def test_census_counts_like_the_pilot_objects_do():
    text = FIXTURE.read_text()
    census = read_census(text, "condor_q")
    assert census.supply == count_by_label(parse_ads(text, "condor_q"))
    assert census.total == sum(s.all for s in census.supply.values())
    pilots = {p.job_id: p for p in parse_ads(text, "condor_q")}
    held = [p.job_id for found in census.pilots.values() for p in found]
    assert held == [j for j, p in pilots.items() if p.status is JobStatus.HELD]
    assert census.pilots["CERN-ce504.cern.ch-share"][0] == pilots[held[0]]


def ad(cluster: int, label: str, status: int, qdate: int) -> dict[str, object]:
    return {"ClusterId": cluster, "ProcId": 0, "JobStatus": status, "MATCH_APF_QUEUE": label,
            "QDate": qdate, "EnteredCurrentStatus": qdate}  # fmt: skip


def test_census_keeps_idle_pilots_only_for_labels_that_need_them():
    text = json.dumps([ad(1, "A", 1, 1000), ad(2, "B", 1, 1000), ad(3, "B", 2, 1000)])
    census = read_census(text, "condor_q", keep_idle={"B"})
    assert {label: [p.job_id for p in found] for label, found in census.pilots.items()} == {"B": ["2.0"]}
    assert census.supply["B"] == Supply(idle=1, running=1)


def test_census_queue_hours_and_recent_pilots():
    hour = 3600 * 500_000
    ads = [ad(1, "A", 2, hour + 5), ad(2, "A", 1, hour + 7300), ad(3, "B", 1, hour + 3700), ad(4, "B", 1, 0)]
    census = read_census(json.dumps(ads), "condor_q")
    assert census.queued == {"A": {hour, hour + 7200}, "B": {hour + 3600, 0}}
    assert census.recent == {"A": ["2.0"], "B": ["3.0"]}  # within an hour of the newest (hour + 7300)


@pytest.mark.parametrize(
    "bad", ['[{"JobStatus": "2", "QDate": 1}]', '[{"JobStatus": 9, "QDate": 1}]', "[1]", '{"a": 1}', "[{"]
)
def test_census_rejects_what_it_cannot_count(bad):
    with pytest.raises(BatchError):
        read_census(bad, "condor_q")


def test_census_lists_every_pilot_of_the_labels_asked_for():
    """``autopyfactory pilots remove`` needs a label's pilots, not just the held ones."""
    text = json.dumps([ad(1, "A", 1, 1000), ad(2, "A", 2, 1000), ad(3, "B", 2, 1000)])
    census = read_census(text, "condor_q", keep_all={"A"})
    listed = {label: [p.job_id for p in found] for label, found in census.pilots.items()}
    assert listed == {"A": ["1.0", "2.0"]}


# ---- the streaming parser: condor_q's answer in pieces, never whole ------------------------------

NASTY = [
    'Error from ce: "quoted", a \\ backslash, braces } ] , { [ and \\" an escaped quote',
    "Zugriff verweigert – é ü 𝄞 🙂",  # 2-, 3- and 4-byte UTF-8 (and surrogate pairs as \u escapes)
    "line\nbreak\ttab \u0000 nul \x7f",
]


def nasty_ads() -> list[dict[str, object]]:
    ads = [ad(10 + i, "A" if i % 2 else "B", 5, 1_700_000_000 + i) for i in range(len(NASTY))]
    for one, reason in zip(ads, NASTY, strict=True):
        one.update(HoldReason=reason, HoldReasonCode=12, NumHolds=1)
    return [*ads, ad(20, "A", 1, 1_700_000_100), ad(21, "C", 2, 1_700_000_200)]


def condor_layout(ads: list[dict[str, object]], ascii_only: bool) -> bytes:
    """The layout condor_q -json prints: ``[``, one attribute per line, ``,`` on a line of its own."""
    shown = [json.dumps(one, indent=2, ensure_ascii=ascii_only) + "\n" for one in ads]
    return ("[\n" + ",\n".join(shown) + "]\n").encode()


def census_of(pieces: list[bytes], **keep: set[str]) -> ScheddCensus:
    return read_census(pieces, "condor_q", **keep)


@pytest.mark.parametrize("ascii_only", [True, False], ids=["escaped", "utf8"])
def test_any_split_of_the_answer_gives_the_same_census(ascii_only):
    data = condor_layout(nasty_ads(), ascii_only)
    whole = census_of([data])
    # the reference is json.loads of the whole answer, not the stream itself
    reference = parse_ads(data.decode(), "condor_q")
    assert whole.supply == count_by_label(reference)
    assert sorted(p.hold_reason for found in whole.pilots.values() for p in found) == sorted(NASTY)
    assert [census_of([data[:cut], data[cut:]]) for cut in range(len(data) + 1)] == [whole] * (len(data) + 1)
    assert census_of([data[i : i + 1] for i in range(len(data))]) == whole
    assert census_of([data[i : i + 7] for i in range(0, len(data), 7)]) == whole


def test_the_real_shape_in_single_bytes():
    data = FIXTURE.read_bytes()
    assert census_of([data[i : i + 1] for i in range(len(data))]) == read_census(data.decode(), "condor_q")


def test_every_truncation_is_an_error_never_fewer_pilots():
    """A cut answer must not count as the pilots it lists so far: that would over-submit."""
    data = condor_layout(nasty_ads(), ascii_only=False)
    complete = data.rindex(b"]") + 1
    for cut in range(len(data) + 1):
        prefix = data[:cut]
        if not prefix.strip():
            assert census_of([prefix]) == ScheddCensus()
        elif cut >= complete:
            assert census_of([prefix]).total == 5
        else:
            with pytest.raises(BatchError, match="truncated"):
                census_of([prefix[: cut // 2], prefix[cut // 2 :]])


@pytest.mark.parametrize("empty", [b"", b"\n", b"  \n", b"[]", b"[\n]\n", b" [ ] "])
def test_an_empty_answer_is_no_pilots(empty):
    assert census_of([empty]) == ScheddCensus()


ONE = json.dumps(ad(1, "A", 2, 1000))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Error: communication error\n", "expected '\\['"),
        (ONE, "expected '\\['"),  # an ad, not a list of them
        ("[1]", "expected a job ad or '\\]'"),
        (f"[{ONE}, 1]", "expected a job ad, got '1\\]'"),
        (f"[{ONE}, 1, {ONE}]", "expected a job ad, got '1, "),  # parses as a list, not of ads
        (f"[{ONE},]", "expected a job ad, got '\\]'"),  # json.loads refuses a trailing comma too
        (f"[,{ONE}]", "expected a job ad or '\\]'"),
        (f"[{ONE}{ONE}]", "expected ',' or '\\]'"),
        (f"[{ONE}] and more", "expected nothing after '\\]'"),
        (f"[{ONE}]\n[{ONE}]\n", "expected nothing after '\\]'"),  # two answers in one output
        ("[{]", "a truncated or bad job ad"),
        ('[{"ClusterId": 1, "JobStatus": tru}]', "a truncated or bad job ad"),
        ('[{"JobStatus": 9, "QDate": 1}]', "bad job ad"),
        ("[" + "[" * 100_000, "expected a job ad"),
        ("[" + '{"a":' * 100_000, "a truncated or bad job ad"),  # too deep: no RecursionError
    ],
)
def test_garbage_is_an_error_with_its_place(text, message):
    with pytest.raises(BatchError, match=f"^condor_q: .*{message}"):
        census_of([text.encode()])


def test_garbage_after_ads_stops_the_stream_at_once():
    """A structural error is raised by the ``feed`` that brings it, not at the end: condor_q is
    killed instead of read to the end."""
    stream = AdStream("condor_q", lambda one: None)
    with pytest.raises(BatchError, match=r"at character \d+ \(after 1 job ads\): expected ',' or"):
        stream.feed(f"[{ONE} oops".encode())


def test_ads_are_handed_on_as_soon_as_they_are_complete():
    seen: list[dict[str, object]] = []
    stream = AdStream("condor_q", seen.append)
    data = condor_layout([ad(1, "A", 2, 1000), ad(2, "A", 2, 1000)], ascii_only=True)
    second = data.index(b"{", data.index(b"}"))
    stream.feed(data[: second + 10])
    assert [one["ClusterId"] for one in seen] == [1]
    stream.feed(data[second + 10 :])
    stream.close()
    assert [one["ClusterId"] for one in seen] == [1, 2]


def test_memory_holds_a_piece_not_the_answer():
    """20,000 ads (~2.7 MB) fed in 64 KiB pieces: the parser's peak is a few pieces, so it cannot
    be holding the text (or the ads) of the whole answer."""
    data = condor_layout([ad(i, f"L{i % 50}", 2, 1000 + i) for i in range(20_000)], ascii_only=True)
    pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    count = 0

    def one(_: dict[str, object]) -> None:
        nonlocal count
        count += 1

    stream = AdStream("condor_q", one)
    tracemalloc.start()
    try:
        for piece in pieces:
            stream.feed(piece)
        stream.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 20_000
    assert len(data) > 2_000_000
    assert peak < 600_000


def test_an_ad_larger_than_a_piece():
    big = ad(1, "A", 5, 1000)
    big.update(HoldReason='x\\"é' * 100_000, HoldReasonCode=1)
    data = condor_layout([big, ad(2, "A", 2, 1000)], ascii_only=False)
    found = census_of([data[i : i + 4096] for i in range(0, len(data), 4096)])
    assert found.pilots["A"][0].hold_reason == big["HoldReason"]
    assert found.supply["A"] == Supply(running=1, held=1)


def test_bytes_that_are_not_utf8_do_not_make_the_census_unknown():
    data = condor_layout(nasty_ads(), ascii_only=False).replace("é".encode(), b"\xff")
    assert census_of([data]).total == 5


# ---- census_query: the stream from a real pipe, with the guarantees of every condor call --------


@pytest.fixture
def fake_condor_q(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """Write ``condor_q`` (a shell script body) first on PATH; returns the scratch directory."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")

    def write(body: str) -> Path:
        tool = bin_dir / "condor_q"
        tool.write_text(f"#!/bin/sh\ncd {tmp_path}\n{body}\n")
        tool.chmod(0o755)
        return tmp_path

    return write


def query(
    timeout: float = 30, stop: Callable[[], bool] | None = None, keep_all: frozenset[str] = frozenset()
) -> ScheddCensus:
    return census_query(Schedd(), "f", timeout, keep_idle=set(), keep_all=keep_all, stop=stop)


def test_a_large_answer_through_the_pipe(fake_condor_q):
    ads = [ad(i, f"L{i % 37}", 1 + i % 2, 1_700_000_000 + i) for i in range(5000)]
    ads[2500].update(JobStatus=5, HoldReason='é\\"},' * 50_000, HoldReasonCode=3)  # > one piece
    data = condor_layout(ads, ascii_only=False)
    work = fake_condor_q('cat answer.json; echo "$@" > argv')
    (work / "answer.json").write_bytes(data)
    found = query(keep_all=frozenset({"L0"}))
    assert found == census_of([data], keep_all={"L0"})
    assert found.total == 5000
    assert (work / "argv").read_text().split() == [
        "-constraint", 'FactoryId', '==', '"f"', "-json", "-attributes", ",".join(CENSUS_ATTRIBUTES)
    ]  # fmt: skip


def test_a_complete_answer_with_a_failed_exit_is_unknown(fake_condor_q):
    work = fake_condor_q("cat answer.json; echo '-- Failed to fetch ads from: schedd' >&2; exit 1")
    (work / "answer.json").write_bytes(condor_layout(nasty_ads(), ascii_only=True))
    with pytest.raises(
        BatchError,
        match=r"^condor_q \(local schedd\) exited 1: -- Failed to fetch ads from: schedd$",
    ):
        query()


def test_a_failure_on_stdout_is_quoted(fake_condor_q):
    """What a failing tool printed on stdout ends the stream at its first character (the tool is
    killed, its exit status never read): the error quotes it."""
    fake_condor_q("echo 'Error: no such constraint'; exit 2")
    with pytest.raises(BatchError, match=r"expected '\[', got 'Error: no such constraint\\n'$"):
        query()


def test_a_silent_failure_says_so(fake_condor_q):
    fake_condor_q("exit 3")
    with pytest.raises(BatchError, match=r"^condor_q \(local schedd\) exited 3: no message$"):
        query()


def gone(pid: int) -> bool:
    """The process has ended (a zombie waiting for init counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except FileNotFoundError:
        return True


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while not gone(pid):
        assert time.monotonic() < deadline, f"process {pid} still there"
        time.sleep(0.05)


def test_half_an_answer_then_silence_times_out_and_kills_the_tool(fake_condor_q):
    work = fake_condor_q("sleep 60 & echo $! > pid; head -c 300 answer.json; wait")
    (work / "answer.json").write_bytes(condor_layout(nasty_ads(), ascii_only=True))
    started = time.monotonic()
    with pytest.raises(BatchError, match=r"^condor_q \(local schedd\): no answer within 0.5 s$"):
        query(timeout=0.5)
    assert time.monotonic() - started < 10
    wait_gone(int((work / "pid").read_text()))


def test_an_answer_that_never_ends_times_out(fake_condor_q):
    """Data keeps coming: the timeout is for the whole call, not for each read."""
    fake_condor_q("printf '[\\n'; while :; do printf ' '; sleep 0.01; done")
    started = time.monotonic()
    with pytest.raises(BatchError, match="no answer within 1 s"):
        query(timeout=1)
    assert time.monotonic() - started < 10


def test_a_tool_that_closes_stdout_but_does_not_exit_times_out(fake_condor_q):
    """The exit status decides whether the answer counts, so it is waited for (within the timeout)."""
    fake_condor_q("printf '[]\\n'; exec >&-; exec sleep 60")
    with pytest.raises(BatchError, match=r"no answer within 0\.5 s"):
        query(timeout=0.5)


def test_a_bad_ad_kills_the_tool_without_waiting_for_the_rest(fake_condor_q):
    work = fake_condor_q("""sleep 60 & echo $! > pid; printf '[{"JobStatus": 9, "QDate": 1}\\n,\\n'; wait""")
    started = time.monotonic()
    with pytest.raises(BatchError, match="bad job ad"):
        query(timeout=60)
    assert time.monotonic() - started < 10
    wait_gone(int((work / "pid").read_text()))


def test_a_stopping_factory_abandons_the_query(fake_condor_q):
    fake_condor_q("exec sleep 60")
    started = time.monotonic()
    with pytest.raises(BatchError, match="abandoned, the factory is stopping"):
        query(timeout=60, stop=lambda: True)
    assert time.monotonic() - started < 10


def test_a_missing_condor_q_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BatchError, match=r"^condor_q: cannot run: No such file or directory"):
        query()


def test_no_room_for_condor_q_stderr_is_an_error_not_a_crash(fake_condor_q, monkeypatch, tmp_path):
    fake_condor_q("printf '[]\\n'")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    with pytest.raises(BatchError, match=r"^condor_q: cannot run: no temporary file for its stderr"):
        query()


def test_the_emulator_answers_in_the_real_layout(condor):
    """The emulator prints with classad2 like condor: the stream parses it, quotes and all."""
    ids = condor.submit('executable = /bin/true\n+FactoryId = "f"\n+MATCH_APF_QUEUE = "A"\nqueue 3\n')
    condor.set_status(ids[0], JobStatus.HELD, hold_reason=NASTY[0] + " " + NASTY[1], hold_reason_code=12)
    condor.set_status(ids[1], JobStatus.RUNNING)
    found = query()
    assert found.supply == {"A": Supply(idle=1, running=1, held=1)}
    assert found.pilots["A"][0].hold_reason == NASTY[0] + " " + NASTY[1]


@pytest.mark.parametrize(("kind", "message"), [("queued-exit", "exited 1"), ("garbage", "truncated")])
def test_the_emulator_failing_makes_the_census_unknown(condor, kind, message):
    condor.submit('executable = /bin/true\n+FactoryId = "f"\n+MATCH_APF_QUEUE = "A"\nqueue 3\n')
    condor.fail_next("condor_q", kind)
    with pytest.raises(BatchError, match=message):
        query()


# ---- against the real condor_q ------------------------------------------------------------------

REAL_SUBMIT = """universe = vanilla
executable = /bin/sleep
arguments = 600
requirements = false
+FactoryId = "stream"
+MATCH_APF_QUEUE = "A"
queue 3
+MATCH_APF_QUEUE = "B"
queue 2
"""
#: set with condor_qedit (a ClassAd string: condor_hold -reason leaves HoldReason undefined when the
#: reason has a double quote), printed by condor_q -json with escaped quotes and raw UTF-8
REAL_REASON = '"operator said \\"no\\" \\\\ at C:\\\\x } ] , { – é 🙂"'
CENSUS_SCRIPT = """
import json, sys
from autopyfactory.batch.condor.command import Schedd
from autopyfactory.batch.condor.census import census_query
found = census_query(Schedd(sys.argv[1]), "stream", 60, set(), {"A", "B"})
supply = {k: [s.idle, s.running, s.held, s.all] for k, s in found.supply.items()}
reasons = sorted(p.hold_reason for ps in found.pilots.values() for p in ps if p.hold_reason)
print(json.dumps({"supply": supply, "reasons": reasons}))
"""


@pytest.mark.htcondor
@pytest.mark.timeout(400)
def test_the_real_condor_q_answer_in_any_split_and_through_the_pipe(real_condor):
    """HTCondor's own ``condor_q -json`` bytes (a hold reason with quotes, a backslash, braces and
    non-ASCII): split at every byte they count like ``json.loads`` of the whole; and the census
    run as the pool user through the real tool agrees."""
    work = real_condor.workdir("census-stream")
    (work / "pilots.sub").write_text(REAL_SUBMIT)
    cluster = real_condor.run(["condor_submit", "-terse", str(work / "pilots.sub")], cwd=work).stdout.split(
        "."
    )[0]
    real_condor.run(["condor_hold", f"{cluster}.0"])
    real_condor.run(["condor_qedit", f"{cluster}.0", "HoldReason", REAL_REASON])
    argv = ["condor_q", "-name", real_condor.submit_schedd, "-constraint", 'FactoryId == "stream"', "-json",
            "-attributes", ",".join(CENSUS_ATTRIBUTES)]  # fmt: skip
    raw = subprocess.run(real_condor.command(argv), capture_output=True, timeout=60, check=True).stdout
    reference = parse_ads(raw.decode(), "condor_q")
    whole = read_census([raw], "condor_q", keep_all={"A", "B"})
    assert whole.supply == count_by_label(reference)
    assert whole.supply["A"] == Supply(idle=2, held=1, total=3)
    assert b'\\"no\\"' in raw
    assert "é 🙂".encode() in raw  # escapes and raw UTF-8 in the real bytes
    reason = next(p.hold_reason for p in reference if p.hold_reason)
    assert reason.startswith('operator said "no" \\')
    assert reason.endswith("} ] , { – é 🙂")
    assert [p.hold_reason for p in whole.pilots["A"] if p.hold_reason] == [reason]
    assert all(
        read_census([raw[:cut], raw[cut:]], "condor_q", keep_all={"A", "B"}) == whole
        for cut in range(len(raw))
    )
    pool_user = real_condor.python_command(["-c", CENSUS_SCRIPT, real_condor.submit_schedd])
    through_pipe = subprocess.run(
        pool_user, capture_output=True, text=True, timeout=120, check=True, cwd=work
    )
    assert json.loads(through_pipe.stdout) == {
        "supply": {"A": [2, 0, 1, 3], "B": [2, 0, 0, 2]},
        "reasons": [reason],
    }


def test_an_undefined_hold_reason_is_empty_not_none():
    """Real condor_q -json prints ``"HoldReason": null`` when condor_hold -reason had a quote."""
    held = ad(1, "A", 5, 1000)
    held.update(HoldReason=None, HoldReasonCode=1)
    assert read_census(json.dumps([held]), "condor_q").pilots["A"][0].hold_reason == ""
