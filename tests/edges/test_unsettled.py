"""``<stateDir>/unsettled.json``: labels recorded before a submission, forgotten once settled."""

from __future__ import annotations

from autopyfactory.edges.unsettled import UnsettledFile


def test_recorded_labels_survive_a_new_reader_until_settled(tmp_path):
    UnsettledFile(tmp_path).mark(["A", "B"], 100.0)
    UnsettledFile(tmp_path).mark(["B", "C"], 200.0)  # B keeps the time of its first record
    assert UnsettledFile(tmp_path).labels() == {"A": 100.0, "B": 100.0, "C": 200.0}
    UnsettledFile(tmp_path).settle(["A", "C", "never-recorded"])
    assert UnsettledFile(tmp_path).labels() == {"B": 100.0}


def test_an_unreadable_file_is_set_aside_and_said(tmp_path, caplog):
    (tmp_path / "unsettled.json").write_text('{"labels": ')
    store = UnsettledFile(tmp_path)
    assert store.labels() == {}
    assert (tmp_path / "unsettled.bad").exists()
    assert "is unreadable, set aside" in caplog.text
    store.mark(["A"], 1.0)
    assert store.labels() == {"A": 1.0}
