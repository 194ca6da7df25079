"""The pilot announcements' outbox on disk: order, restarts, bad files, the size limit."""

from __future__ import annotations

from autopyfactory.observers.outbox import SEGMENT_ITEMS, PilotOutbox


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
