"""The benchmark's pure parts: request-log counting, target lines, the client-pass report."""

import os
from pathlib import Path

import pytest

from bench import s3_requests, targets
from bench.client_pass import Timed, result_rows, stage_recordings
from jobs.management.commands.bench import reference_lines

BUCKET = "lubdub"


def _line(request: str, status: int, colour: str = "") -> str:
    """A line as the local S3-API server writes it; some statuses come in colour codes."""
    if colour:
        request = f"{colour}{request} HTTP/1.1\x1b[0m"
    else:
        request = f"{request} HTTP/1.1"
    return f'127.0.0.1 - - [03/Dec/2026 18:05:51] "{request}" {status} -'


BOLD = "\x1b[35m\x1b[1m"
LOG = [
    " * Running on http://127.0.0.1:20308",
    _line("POST /lubdub/uploads/b1/bench.zip?uploads", 200),
    _line("PUT /lubdub/uploads/b1/bench.zip?partNumber=1&uploadId=u", 200),
    _line("POST /lubdub/uploads/b1/bench.zip?uploadId=u", 200),
    _line("GET /lubdub/uploads/b1/bench.zip", 206, BOLD),
    _line("HEAD /lubdub/uploads/b1/bench.zip", 200),
    _line("PUT /lubdub/packs/p1", 200),
    _line("GET /lubdub/packs/p1", 206, BOLD),
    _line("GET /lubdub/recordings/ab%2Fcd", 200),
    _line("DELETE /lubdub/uploads/b1/bench.zip", 204, BOLD),
    _line("PUT /lubdub/reports/b1/screening.csv", 200),
    _line("GET /lubdub/reports/b1/screening.csv?X-Amz-Signature=s", 200),
    _line("HEAD /lubdub", 200, "\x1b[33m"),
    _line("GET /lubdub/models/screening/3.0.0.zip", 200),
    # Other buckets on the same server, one whose name begins like the app's.
    _line("PUT /lubdub-test/packs/p2", 200),
    _line("GET /lubdubx", 200),
    "Traceback (most recent call last):",
]


def test_it_counts_the_apps_bucket_by_kind() -> None:
    counts = s3_requests.count_requests(LOG, BUCKET)

    assert dict(counts) == {
        s3_requests.UPLOAD: 3,  # start, one part, completion
        s3_requests.AUDIO: 6,  # the upload's GET, HEAD and DELETE; a pack's PUT and GET; a recording's GET
        s3_requests.REPORTS: 2,
        s3_requests.OTHER: 2,
    }


@pytest.mark.parametrize(
    ("method", "target", "kind"),
    [
        ("PUT", "/lubdub/uploads/b/x.zip", s3_requests.UPLOAD),
        ("POST", "/lubdub/uploads/b/x.zip?uploads", s3_requests.UPLOAD),
        ("GET", "/lubdub/uploads/b/x.zip", s3_requests.AUDIO),
        ("DELETE", "/lubdub/uploads/b/x.zip", s3_requests.AUDIO),
        ("GET", "/lubdub/packs/p?x-id=GetObject", s3_requests.AUDIO),
        ("PUT", "/lubdub/recordings/abc", s3_requests.AUDIO),
        ("PUT", "/lubdub/reports/b/m.pdf", s3_requests.REPORTS),
        ("GET", "/lubdub?list-type=2&prefix=packs%2F", s3_requests.OTHER),
        ("GET", "/lubdub/", s3_requests.OTHER),
        ("PUT", "/lubdub-test/packs/p", None),
        ("GET", "/other/lubdub/packs/p", None),
    ],
)
def test_it_sorts_one_request_by_the_key_it_touches(method: str, target: str, kind: str | None) -> None:
    assert s3_requests.request_kind(method, target, BUCKET) == kind


def test_it_counts_zero_of_every_kind_when_nothing_came() -> None:
    assert dict(s3_requests.count_requests([], BUCKET)) == dict.fromkeys(s3_requests.KINDS, 0)


def test_it_reads_only_whole_lines_written_since_the_mark(tmp_path: Path) -> None:
    path = tmp_path / "s3.log"
    path.write_text(LOG[0] + "\n" + LOG[1] + "\n")
    log = s3_requests.RequestLog(path)
    log.mark()
    with path.open("a") as handle:
        handle.write(LOG[6] + "\n" + LOG[7][:30])  # the second line is still being written

    assert log.lines_since_mark() == [LOG[6]]


def test_it_finds_the_log_of_the_server_on_the_apps_port(tmp_path: Path) -> None:
    (tmp_path / "s3").mkdir()
    (tmp_path / "s3" / "port").write_text("20308\n")
    (tmp_path / "s3" / "s3.log").write_text("")

    assert s3_requests.server_log(tmp_path, 20308) == tmp_path / "s3" / "s3.log"
    assert s3_requests.server_log(tmp_path, 9000) is None  # the app uses another server
    assert s3_requests.server_log(tmp_path, None) is None  # AWS
    assert s3_requests.server_log(tmp_path / "none", 20308) is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (targets.at_least("ratio", 0.5, 0.5), "ratio: 0.50  (target >= 0.5) ok"),
        (targets.at_least("ratio", 0.4949, 0.5), "ratio: 0.49  (target >= 0.5) MISSED"),
        (targets.at_most("per recording", 0.1, 0.1), "per recording: 0.100  (target <= 0.1) ok"),
        (targets.at_most("per recording", 1.25, 0.1), "per recording: 1.250  (target <= 0.1) MISSED"),
    ],
)
def test_it_states_a_figure_against_its_target(line: str, expected: str) -> None:
    assert line == expected


def test_it_holds_each_storage_to_its_share_of_the_cli_rate() -> None:
    assert (
        targets.cli_ratio_line(60.0, 100.0, "s3") == "ratio to the CLI (s3 storage): 0.60  (target >= 0.5) ok"
    )
    assert targets.cli_ratio_line(60.0, 100.0, "filesystem") == (
        "ratio to the CLI (filesystem storage): 0.60  (target >= 0.7) MISSED"
    )
    assert targets.requests_line(30, 600) == (
        "ingest + analysis requests per recording: 0.050  (target <= 0.1) ok"
    )
    assert targets.requests_line(1200, 600).endswith("(target <= 0.1) MISSED")


CLI = Timed(600, 1.5, 600)
STARTUP = Timed(1, 0.9, 1)
CLIENT = Timed(600, 12.0, 600)


def test_it_reports_the_s3_pass_with_its_requests() -> None:
    requests = {s3_requests.UPLOAD: 3, s3_requests.AUDIO: 18, s3_requests.REPORTS: 9, s3_requests.OTHER: 1}
    lines = reference_lines(
        cli=CLI, startup=STARTUP, client=CLIENT, requests=requests, storage="s3", source="the log"
    )

    assert lines == [
        "python -m ml predict (the reference: one process, the workers' bundle, the same 600 files): "
        "400.0 recordings/s (600 in 1.50 s; start-up and one file: 0.90 s)",
        "end to end through lubdub (submit --wait, then the results CSV downloaded): 50.0 recordings/s "
        "(600 in 12.0 s)",
        "  the CLI past its start-up: 998.3 recordings/s",  # 599 files in 1.5 - 0.9 s
        "  ratio to the CLI (s3 storage): 0.05  (target >= 0.5) MISSED",
        "  ratio to the CLI's whole run, start-up included: 0.12",
        "object-store requests during the lubdub run (the log): upload 3, ingest + analysis 18, reports 9, "
        "other 1",
        "  ingest + analysis requests per recording: 0.030  (target <= 0.1) ok",
    ]


def test_it_reports_the_filesystem_pass_without_requests_and_warns_of_missing_results() -> None:
    lines = reference_lines(
        cli=CLI, startup=STARTUP, client=Timed(600, 1.5, 598), requests=None, storage="filesystem", source=""
    )

    # 600 files in 1.5 s, 599 of them in the 0.6 s past the CLI's start-up: the target
    # is judged against the loaded rate (998.3/s), not the whole run's 400/s.
    assert lines[3] == "  ratio to the CLI (filesystem storage): 0.40  (target >= 0.7) MISSED"
    assert lines[5:] == [
        "  warning: lubdub results gave 598 results without an error for 600 files",
        "object-store requests: none (filesystem storage)",
    ]


def test_it_says_when_requests_could_not_be_counted() -> None:
    lines = reference_lines(
        cli=CLI, startup=STARTUP, client=CLIENT, requests=None, storage="s3", source="no request log"
    )

    assert lines[-1] == "object-store requests: not counted (no request log; --s3-log names one)"


def test_it_leaves_the_rate_past_start_up_out_when_the_run_was_no_longer_than_one_file() -> None:
    lines = reference_lines(
        cli=Timed(80, 0.9, 80), startup=Timed(1, 0.95, 1), client=CLIENT, requests=None, storage="s3",
        source="no request log",
    )  # fmt: skip

    assert not any("past its start-up" in line for line in lines)
    assert lines[2] == "  ratio to the CLI (s3 storage): 0.56  (target >= 0.5) ok"  # against the whole run


def test_it_stages_copies_named_as_in_the_archive(tmp_path: Path) -> None:
    source = tmp_path / "a0001.wav"
    source.write_bytes(b"RIFF....WAVE")
    staged = stage_recordings([source, source], tmp_path / "folder")

    assert [path.name for path in staged] == ["00000-a0001.wav", "00001-a0001.wav"]
    assert all(path.read_bytes() == b"RIFF....WAVE" and not os.path.islink(path) for path in staged)


def test_it_counts_result_rows_without_an_error(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    path.write_text("path,label,error\na.wav,normal,\nb.wav,,unreadable: no such file\nc.wav,abnormal,\n")

    assert result_rows(path) == 2
