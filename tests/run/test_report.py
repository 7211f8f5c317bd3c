"""run/report.py on its own: where a run writes its proof, locally and through
``file://`` URLs (Airflow's ObjectStoragePath), and how each failure is reported."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from airflow_provider_recordings.core.errors import PostHogConfigError, PostHogOutputError
from airflow_provider_recordings.run.report import AuditReport, open_for_writing, read_json, write_json

#: A device every write to fails with ENOSPC, after opening fine: a disk that fills up.
FULL = Path("/dev/full")

needs_dev_full = pytest.mark.skipif(not FULL.exists(), reason="needs /dev/full")


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(params=["path", "file-url"])
def target(request, tmp_path):
    """Make a destination string for a path under tmp_path: a local path or a file:// URL."""

    def make(path: Path) -> str:
        return str(path) if request.param == "path" else path.as_uri()

    return make


# -- opening -----------------------------------------------------------------------------


def test_folders_are_made_as_needed(tmp_path, target):
    path = tmp_path / "a" / "b" / "report.jsonl"
    with open_for_writing("report_path", target(path), "w") as handle:
        handle.write("one\n")
    assert path.read_text() == "one\n"


def test_append_mode_continues_and_write_mode_starts_over(tmp_path, target):
    path = tmp_path / "report.jsonl"
    path.write_text("earlier\n")
    with open_for_writing("report_path", target(path), "a") as handle:
        handle.write("later\n")
    assert path.read_text() == "earlier\nlater\n"
    with open_for_writing("report_path", target(path), "w") as handle:
        handle.write("anew\n")
    assert path.read_text() == "anew\n"


@pytest.mark.parametrize("depth", [1, 2], ids=["parent-is-a-file", "grandparent-is-a-file"])
def test_a_file_in_the_way_of_a_folder_fails_naming_the_parameter(tmp_path, target, depth):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    path = blocker / "x" / "report.jsonl" if depth == 2 else blocker / "report.jsonl"
    destination = target(path)
    with pytest.raises(PostHogConfigError) as raised:
        open_for_writing("receipt_path", destination, "w")
    message = str(raised.value)
    assert message.startswith(f"receipt_path: cannot write {destination!r} (")
    assert "a file is in the way of a folder on that path" in message
    assert "choose a path whose folder exists or can be created, and that this worker may write" in message
    assert blocker.read_text() == "not a folder"


def test_a_folder_as_the_target_fails_saying_so(tmp_path):
    with pytest.raises(PostHogConfigError, match=r"report_path: cannot write .* \(it is a folder\)"):
        open_for_writing("report_path", str(tmp_path), "w")


def test_a_user_folder_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with open_for_writing("report_path", "~/reports/r.jsonl", "w") as handle:
        handle.write("x")
    assert (tmp_path / "reports" / "r.jsonl").read_text() == "x"


# -- the audit report --------------------------------------------------------------------


def test_the_report_writes_one_sorted_json_line_per_record(tmp_path, target):
    path = tmp_path / "out" / "report.jsonl"
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with AuditReport(target(path)) as report:
        report.write(id="r-1", result="deleted", at=when)
        report.write(action="delete", id="r-2", result="already_gone")
        assert report.lines == 2
        # Flushed line by line: a run killed now still leaves both lines.
        assert len(path.read_text().splitlines()) == 2
    assert (
        path.read_text().splitlines()[0]
        == '{"at": "2026-01-02 03:04:05+00:00", "id": "r-1", "result": "deleted"}'
    )
    assert lines_of(path)[1] == {"action": "delete", "id": "r-2", "result": "already_gone"}


def test_a_resumed_report_appends(tmp_path, target):
    path = tmp_path / "report.jsonl"
    with AuditReport(target(path)) as report:
        report.write(id="before-deferral")
    with AuditReport(target(path), append=True) as report:
        report.write(id="after-deferral")
    assert [line["id"] for line in lines_of(path)] == ["before-deferral", "after-deferral"]
    with AuditReport(target(path)) as report:
        report.write(id="a-new-run")
    assert [line["id"] for line in lines_of(path)] == ["a-new-run"]


@pytest.mark.parametrize("destination", [None, ""])
def test_without_a_destination_the_report_does_nothing(destination, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with AuditReport(destination) as report:
        report.write(id="r-1")
        assert report.lines == 0 and report.target is None
    assert list(tmp_path.iterdir()) == []


def test_opening_twice_keeps_one_handle_and_closing_twice_is_harmless(tmp_path):
    path = tmp_path / "report.jsonl"
    report = AuditReport(str(path)).open()
    report.write(id="one")
    report.open()  # a second open would truncate the file in "w" mode
    report.write(id="two")
    report.close()
    report.close()
    report.write(id="after-close")  # nothing to write to any more: ignored
    assert [line["id"] for line in lines_of(path)] == ["one", "two"]


def test_opening_an_unwritable_report_names_its_parameter(tmp_path):
    (tmp_path / "taken").write_text("")
    report = AuditReport(str(tmp_path / "taken" / "r.jsonl"), parameter="audit_path")
    with pytest.raises(PostHogConfigError, match="^audit_path: cannot write"):
        report.open()


@needs_dev_full
def test_a_write_that_fails_later_raises_an_output_error_naming_the_parameter():
    report = AuditReport(str(FULL), parameter="report_path").open()
    with pytest.raises(PostHogOutputError) as raised:
        report.write(id="r-1", result="deleted")
    assert raised.value.parameter == "report_path"
    assert str(raised.value).startswith("report_path: writing '/dev/full' failed (OSError: ")
    assert report.lines == 0
    # The failed line is still in the handle's buffer: closing must not raise a second
    # error for it (the driver closes in a ``finally``, which would replace the first).
    report.close()


# -- receipts ----------------------------------------------------------------------------


def test_write_json_and_read_json_round_trip(tmp_path, target):
    destination = target(tmp_path / "receipts" / "erasure.json")
    document = {"status": "complete", "deleted": ["b", "a"], "at": "2026-01-01T00:00:00Z"}
    write_json("receipt_path", destination, document)
    text = (tmp_path / "receipts" / "erasure.json").read_text()
    assert text == json.dumps(document, indent=2, sort_keys=True) + "\n"
    assert read_json(destination) == document
    write_json("receipt_path", destination, {"status": "replaced"})
    assert read_json(destination) == {"status": "replaced"}


def test_write_json_where_a_file_is_in_the_way_names_the_parameter(tmp_path, target):
    (tmp_path / "taken").write_text("")
    with pytest.raises(PostHogConfigError, match="^receipt_path: cannot write .*a file is in the way"):
        write_json("receipt_path", target(tmp_path / "taken" / "r.json"), {"a": 1})


@needs_dev_full
def test_write_json_that_fails_while_writing_raises_an_output_error():
    with pytest.raises(PostHogOutputError, match=r"^receipt_path: writing '/dev/full' failed") as raised:
        write_json("receipt_path", str(FULL), {"a": 1})
    assert raised.value.parameter == "receipt_path"


@pytest.mark.parametrize(
    "content",
    [None, "", "{not json", "[1, 2]", '"text"', "null", b"\xff\xfe not utf-8"],
    ids=["missing", "empty", "broken", "a-list", "a-string", "null", "not-utf8"],
)
def test_read_json_of_nothing_usable_is_none(tmp_path, target, content):
    path = tmp_path / "receipt.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert read_json(target(path)) is None


def test_read_json_of_a_folder_or_a_path_through_a_file_is_none(tmp_path, target):
    (tmp_path / "taken").write_text("{}")
    assert read_json(target(tmp_path)) is None
    assert read_json(target(tmp_path / "taken" / "r.json")) is None
