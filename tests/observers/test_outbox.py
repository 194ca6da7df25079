"""The pilot announcements' outbox on disk: order, restarts, bad files, the size limit."""

from __future__ import annotations

import os
import time

from autopyfactory.observers.outbox import SEGMENT_ITEMS, STALE_TEMPORARY_SECONDS, PilotOutbox


def pilots(*cids: str) -> list[dict[str, str]]:
    return [{"cid": cid, "label": "A", "factory": "f"} for cid in cids]


def test_oldest_first_across_segments_and_a_restart(tmp_path):
    outbox = PilotOutbox(tmp_path, 10**6)
    outbox.add(pilots(*(f"1.{n}" for n in range(SEGMENT_ITEMS + 5))))  # two segments
    outbox.add(pilots("2.0"))
    assert len(list(tmp_path.iterdir())) == 3
    first = outbox.peek(SEGMENT_ITEMS + 2)
    outbox.sent(first)
    assert len(list(tmp_path.iterdir())) == 2  # the first segment is gone, the second partly sent
    again = PilotOutbox(tmp_path, 10**6)
    assert [item["cid"] for item in again.peek(10)] == [
        *(f"1.{n}" for n in range(SEGMENT_ITEMS, SEGMENT_ITEMS + 5)),
        "2.0",
    ]


def test_an_unreadable_segment_is_set_aside_and_the_others_kept(tmp_path, caplog):
    PilotOutbox(tmp_path, 10**6).add(pilots("1.0"))
    (tmp_path / "000000000000-bad.json").write_text("{truncated")
    outbox = PilotOutbox(tmp_path, 10**6)
    assert [item["cid"] for item in outbox.peek(5)] == ["1.0"]
    assert (tmp_path / "000000000000-bad.bad").exists()
    assert "is unreadable, set aside" in caplog.text


def test_an_outbox_closing_and_its_successor_keep_their_own_files(tmp_path):
    old = PilotOutbox(tmp_path, 10**6)
    old.add(pilots("1.0"))
    new = PilotOutbox(tmp_path, 10**6)  # a restart while the old one still sends
    new.add(pilots("2.0"))
    old.add(pilots("3.0"))
    old.sent(old.peek(5))
    new.sent(new.peek(1))  # 1.0 again: a repeat, which the monitor ignores
    assert [item["cid"] for item in PilotOutbox(tmp_path, 10**6).peek(5)] == ["2.0"]


def test_announcements_dropped_meanwhile_are_not_counted_as_sent(tmp_path):
    dropped: list[int] = []
    size = len('[{"cid":"1.0","label":"A","factory":"f"}]')
    outbox = PilotOutbox(tmp_path, size, dropped.append)
    outbox.add(pilots("1.0"))
    sending = outbox.peek(1)
    outbox.add(pilots("2.0"))  # no room: 1.0 goes while it is being sent
    outbox.sent(sending)
    assert dropped == [1]
    assert [item["cid"] for item in outbox.peek(5)] == ["2.0"]


def test_an_announcement_that_can_never_fit_drops_only_itself(tmp_path):
    dropped: list[int] = []
    size = len('[{"cid":"1.0","label":"A","factory":"f"}]')
    outbox = PilotOutbox(tmp_path, size, dropped.append)
    outbox.add(pilots("1.0"))
    outbox.add(pilots("2." + "0" * size))
    assert dropped == [1]
    assert [item["cid"] for item in outbox.peek(5)] == ["1.0"]


def test_a_call_larger_than_the_limit_keeps_its_newest_announcements(tmp_path):
    dropped: list[int] = []
    size = len('[{"cid":"2.0","label":"A","factory":"f"},{"cid":"3.0","label":"A","factory":"f"}]')
    outbox = PilotOutbox(tmp_path, size, dropped.append)
    outbox.add(pilots("1.0"))
    outbox.add(pilots("2.0", "3.0", "4.0"))  # two segments that fit, not one that cannot
    assert [item["cid"] for item in outbox.peek(5)] == ["4.0"]
    assert sum(dropped) == 3
    assert outbox.bytes <= size
    assert [item["cid"] for item in PilotOutbox(tmp_path, size).peek(5)] == ["4.0"]


def test_a_segment_deleted_by_another_outbox_meanwhile_is_skipped_silently(tmp_path, caplog):
    PilotOutbox(tmp_path, 10**6).add(pilots("1.0"))
    # listed, then gone when read: what a segment the outbox still closing sends and deletes looks like
    (tmp_path / "000000000000-gone.json").symlink_to(tmp_path / "deleted.json")
    outbox = PilotOutbox(tmp_path, 10**6)
    assert [item["cid"] for item in outbox.peek(5)] == ["1.0"]
    assert not (tmp_path / "000000000000-gone.bad").exists()
    assert "unreadable" not in caplog.text


def test_the_stale_temporary_files_of_an_interrupted_write_are_removed(tmp_path):
    stale = tmp_path / ".000000000001-dead.json.x1y2z3.tmp"
    fresh = tmp_path / ".000000000001-live.json.a1b2c3.tmp"  # a writer still closing, mid-write
    for path in (stale, fresh):
        path.write_text('[{"cid":')
    old = time.time() - 2 * STALE_TEMPORARY_SECONDS
    os.utime(stale, (old, old))
    outbox = PilotOutbox(tmp_path, 10**6)
    assert len(outbox) == 0
    assert not stale.exists()
    assert fresh.exists()
