"""``<stateDir>/unsettled.json``: labels recorded before a submission, forgotten once settled."""

from __future__ import annotations

import pytest

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


def test_a_file_that_cannot_be_set_aside_is_said_and_replaced_by_the_next_record(tmp_path, caplog):
    (tmp_path / "unsettled.json").write_text('{"labels": ')
    (tmp_path / "unsettled.bad").mkdir()  # in the way, as a read-only file system would be
    (tmp_path / "unsettled.bad" / "x").write_text("")
    store = UnsettledFile(tmp_path)
    assert store.labels() == {}
    assert "cannot set" in caplog.text
    store.mark(["A"], 1.0)
    assert store.labels() == {"A": 1.0}


def test_a_file_that_cannot_be_read_is_kept_and_nothing_recorded_or_settled(tmp_path):
    (tmp_path / "unsettled.json").mkdir()  # read_text fails with an OSError, as with EACCES or EIO
    store = UnsettledFile(tmp_path)
    for call in (store.labels, lambda: store.mark(["A"], 1.0), lambda: store.settle(["A"])):
        with pytest.raises(IsADirectoryError):
            call()
    assert (tmp_path / "unsettled.json").is_dir()
    assert not (tmp_path / "unsettled.bad").exists()
