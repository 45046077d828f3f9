"""How often the client polls: sooner as a batch nears its end, and for reports just being written."""

from typing import Any

import pytest

from lubdub_client import reports
from lubdub_client.batches import MIN_POLL_SECONDS, POLL_SECONDS, next_poll, wait
from lubdub_client.errors import CliError


def batch(status: str = "analysing", **progress: Any) -> dict[str, Any]:
    fields = {"total": 600, "expected_total": 600, "rejected": 0, "done": 0, "failed": 0, "skipped": 0}
    return {"id": "b1", "status": status, "progress": {**fields, "finished": False, **progress}}


def test_a_batch_far_from_its_end_is_polled_once_a_second() -> None:
    assert next_poll(batch(eta_seconds=30.0)) == POLL_SECONDS
    assert next_poll(batch(eta_seconds=None)) == POLL_SECONDS
    assert next_poll(batch(eta_seconds=30.0), longest=0.2) == 0.2


def test_the_pause_shrinks_with_the_time_left_down_to_the_shortest() -> None:
    assert next_poll(batch(eta_seconds=1.2)) == pytest.approx(0.6)
    assert next_poll(batch(eta_seconds=0.3)) == pytest.approx(0.15)
    assert next_poll(batch(eta_seconds=0.0)) == MIN_POLL_SECONDS


def test_an_upload_still_read_without_its_size_keeps_the_long_pause() -> None:
    # Its estimate counts only the rows written so far.
    assert next_poll(batch("ingesting", expected_total=None, eta_seconds=0.1)) == POLL_SECONDS
    assert next_poll(batch("ingesting", eta_seconds=0.1)) == pytest.approx(MIN_POLL_SECONDS)


class FakeClient:
    """Answers the batch detail from a list of states, and the CSV report once `ready_after` 404s."""

    def __init__(self, states: list[dict[str, Any]], ready_after: int = 0) -> None:
        self.states, self.ready_after, self.misses = states, ready_after, 0

    def json(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        if "/reports/" in path:
            if self.misses < self.ready_after:
                self.misses += 1
                raise CliError("not found", status=404)
            return {"url": "http://storage/results.csv"}
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]


def test_wait_sleeps_what_next_poll_says(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("lubdub_client.batches.time.sleep", slept.append)
    done = batch(eta_seconds=None, finished=True, done=600)
    client = FakeClient([batch(eta_seconds=20.0), batch(eta_seconds=0.5), done])
    assert wait(client, "b1", quiet=True) == done  # type: ignore[arg-type]
    assert slept == [POLL_SECONDS, pytest.approx(0.25)]


def test_reports_being_written_are_polled_soon_then_less_often(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("lubdub_client.reports.time.sleep", slept.append)
    finished = {"id": "b1", "status": "completed", "progress": {"finished": True}}
    client = FakeClient([finished], ready_after=6)
    assert reports.report_link(client, "b1", "csv") == "http://storage/results.csv"  # type: ignore[arg-type]
    assert slept == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
