"""`lubdub`: submit recordings to a LubDub server and fetch what it found.

    lubdub submit PATH... [--name N] [--model V] [--site S] [--wait]
    lubdub status [BATCH]
    lubdub results BATCH [--format csv|json] [-o FILE]
    lubdub report BATCH [--format html|csv|json] [-o FILE|-]
    lubdub list | cancel BATCH | delete BATCH [--yes] | models   (jobs.cli_batches)
    lubdub reanalyze ... | diff A B                              (jobs.cli_reanalysis)

The server and token come from LUBDUB_URL and LUBDUB_TOKEN, or --url/--token.
A folder or several files are zipped while they stream (nothing is written to
disk first). Every error, a mistyped command included, is one line on stderr
and a non-zero exit status: a person reads it, a script checks the status.
While the server answers 503 (a dependency is down) reads and the upload are
tried again a few times, waiting longer each time; the upload carries an
Idempotency-Key, so a retry never creates a second batch.
"""

import argparse
import io
import json
import os
import sys
import time
import urllib.parse
import uuid
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import requests
from tqdm import tqdm

from jobs import cli_batches, cli_reanalysis

BLOCK = 1024 * 1024
POLL_SECONDS = 1.0
TIMEOUT = (10, 300)
# Answers that mean "try again shortly" (an outage, a proxy without its upstream).
RETRY_STATUSES = frozenset({502, 503, 504})
MAX_ATTEMPTS = 5
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3"}
# Reports are written by a worker after the batch finishes: `report` waits this long for them.
REPORT_WAIT_SECONDS = 60.0
# Statuses whose batches get reports (cancelled and failed ones never do).
REPORTED_STATUSES = ("completed", "completed_with_errors")
STDOUT = "-"


class CliError(Exception):
    """A failure to tell the user in one line; `status` is the server's HTTP status, if it answered."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def one_line(text: str) -> str:
    return " ".join(str(text).split())


# --- request bodies ------------------------------------------------------------


class _Sink(io.RawIOBase):
    """A write-only stream whose bytes are collected for a generator to hand on."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def drain(self) -> Iterator[bytes]:
        parts, self._parts = self._parts, []
        yield from parts


def zip_entries(paths: Sequence[Path]) -> list[tuple[str, Path]]:
    """(name in archive, file) pairs: a folder's files keep their path inside it."""
    entries: list[tuple[str, Path]] = []
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(path)
                hidden = any(part.startswith(".") for part in relative.parts)
                if child.is_file() and not child.is_symlink() and not hidden:
                    entries.append((relative.as_posix(), child))
        elif path.is_file():
            entries.append((path.name, path))
        else:
            raise CliError(f"{path}: no such file or folder")
    if not entries:
        raise CliError("nothing to upload: the folders are empty")
    return entries


def zip_stream(entries: Sequence[tuple[str, Path]]) -> Iterator[bytes]:
    """A stored (uncompressed) zip of the entries, produced block by block."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, path in entries:
            info = zipfile.ZipInfo.from_file(path, name)
            info.compress_type = zipfile.ZIP_STORED
            with path.open("rb") as source, archive.open(info, "w") as target:
                while block := source.read(BLOCK):
                    target.write(block)
                    yield from sink.drain()
            yield from sink.drain()
    yield from sink.drain()


def file_stream(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while block := source.read(BLOCK):
            yield block


class MultipartBody:
    """A multipart/form-data body of known length, streamed from a generator.

    Django reads uploads by Content-Length, so the length is computed first
    (for a zip built on the fly, by building it once without keeping it).
    """

    def __init__(
        self, fields: dict[str, str], filename: str, content_type: str, parts: Any, size: int
    ) -> None:
        self.boundary = uuid.uuid4().hex
        head = b"".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in fields.items()
            if value
        )
        head += (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        self._head, self._tail = head, f"\r\n--{self.boundary}--\r\n".encode()
        self._parts, self.file_size = parts, size
        self.progress: tqdm | None = None

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self._head) + self.file_size + len(self._tail)

    def __iter__(self) -> Iterator[bytes]:
        if self.progress is not None:
            self.progress.reset()  # a retry sends the whole body again
        yield self._head
        sent = 0
        for block in self._parts():
            sent += len(block)
            if self.progress is not None:
                self.progress.update(len(block))
            yield block
        if sent != self.file_size:
            raise CliError("a file changed while it was being uploaded; try again")
        yield self._tail


def upload_body(paths: Sequence[Path], fields: dict[str, str]) -> MultipartBody:
    if len(paths) == 1 and paths[0].is_file():
        path = paths[0]
        # An unreadable file fails here, by name; mid-upload it would look like a dropped connection.
        path.open("rb").close()
        kind = "application/zip" if path.suffix.lower() == ".zip" else "application/octet-stream"
        return MultipartBody(fields, path.name, kind, lambda: file_stream(path), path.stat().st_size)
    entries = zip_entries(paths)
    size = sum(len(block) for block in zip_stream(entries))
    name = (paths[0].resolve().name if len(paths) == 1 else "recordings") + ".zip"
    return MultipartBody(fields, name, "application/zip", lambda: zip_stream(entries), size)


# --- the server ----------------------------------------------------------------


def server_url(url: str) -> str:
    """The server's base URL without a trailing slash; CliError unless it is an http(s) address."""
    if not url:
        raise CliError("no server: set LUBDUB_URL or pass --url")
    try:
        parts = urllib.parse.urlsplit(url)
        host, _port = parts.hostname, parts.port  # .port raises ValueError for "host:abc"
    except ValueError as exc:
        raise CliError(f"{url!r} is not a server address ({exc})") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise CliError(f"{url!r} is not a server address: give it as http://HOST:PORT or https://HOST")
    return url.rstrip("/")


class Client:
    def __init__(self, url: str, token: str, *, sleep: Any = time.sleep) -> None:
        self.url = server_url(url)
        if not token:
            raise CliError("no token: set LUBDUB_TOKEN or pass --token (manage.py create_api_token USER)")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"
        self.sleep = sleep

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = path if path.startswith("http") else f"{self.url}{path}"
        # Only what is safe to send twice is retried: reads, and writes with an Idempotency-Key.
        repeatable = method in ("GET", "HEAD") or "Idempotency-Key" in (kwargs.get("headers") or {})
        attempt = 1
        while True:
            response = self._send(method, url, **kwargs)
            if response.status_code not in RETRY_STATUSES or not repeatable or attempt >= MAX_ATTEMPTS:
                break
            delay = backoff_seconds(attempt, response.headers.get("Retry-After"))
            print(
                f"lubdub: server said {response.status_code}; retrying in {delay:g} s "
                f"(attempt {attempt + 1} of {MAX_ATTEMPTS})",
                file=sys.stderr,
            )
            self.sleep(delay)
            attempt += 1
        if response.status_code >= 400:
            raise CliError(_explain(response), status=response.status_code)
        return response

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, url, timeout=TIMEOUT, **kwargs)
        except requests.ConnectionError as exc:
            raise CliError(f"cannot reach {self.url} ({type(exc).__name__})") from exc
        except requests.Timeout as exc:
            raise CliError(f"{self.url} did not answer in time") from exc
        except requests.RequestException as exc:  # an address requests cannot use, a broken answer
            raise CliError(f"request to {url} failed: {exc}") from exc

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise CliError(f"{self.url} did not answer with JSON: is it a LubDub server?") from exc

    def web_link(self, batch_id: str) -> str:
        """The batch's page in the web app."""
        return f"{self.url}/batches/{batch_id}/"


def backoff_seconds(attempt: int, retry_after: str | None) -> float:
    """The wait before the next attempt: the server's Retry-After, else doubling; capped."""
    if retry_after and retry_after.strip().isdigit():
        return min(float(retry_after), MAX_BACKOFF_SECONDS)
    return min(FIRST_BACKOFF_SECONDS * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)


def _explain(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if detail is None and isinstance(body, dict):
        detail = "; ".join(f"{k}: {v}" for k, v in body.items() if k != "code")
    # A detail may hold line breaks (a field's several messages): the error stays one line.
    return one_line(f"server said {response.status_code}: {detail or response.reason}")


# --- commands --------------------------------------------------------------------


def submit(client: Client, args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths]
    fields = {
        "name": args.name or "",
        "model": args.model or "",
        "organisation": args.org or "",
        "site": args.site or "",
    }
    body = upload_body(paths, fields)
    bars_off = _bars_off(args.quiet)
    with tqdm(total=body.file_size, unit="B", unit_scale=True, desc="upload", disable=bars_off) as bar:
        body.progress = bar
        # One key per invocation: the server answers a retry with the batch it already made.
        headers = {"Content-Type": body.content_type, "Idempotency-Key": uuid.uuid4().hex}
        batch = client.json("POST", "/api/v1/batches/", data=body, headers=headers)
    print(batch["id"])
    if args.wait:
        batch = wait(client, batch["id"], quiet=args.quiet)
        print(_status_line(batch), file=sys.stderr)
        print(f"decisions: {_decisions_line(decision_counts(client, batch['id']))}", file=sys.stderr)
        print(f"web: {client.web_link(batch['id'])}", file=sys.stderr)
        return 0 if batch["status"] in REPORTED_STATUSES else 1
    return 0


def wait(client: Client, batch_id: str, *, quiet: bool, poll: float = POLL_SECONDS) -> dict[str, Any]:
    with tqdm(total=None, unit="file", desc="analyse", disable=_bars_off(quiet)) as bar:
        while True:
            batch = client.json("GET", f"/api/v1/batches/{batch_id}/")
            progress = batch["progress"]
            bar.total = max(progress["total"] - progress["rejected"], 0)
            bar.n = progress["done"] + progress["failed"] + progress["skipped"]
            bar.refresh()
            if progress["finished"]:
                return batch
            time.sleep(poll)


def _bars_off(quiet: bool) -> bool | None:
    # None: tqdm draws bars only on a terminal, so logs and scripts get the result lines alone.
    return True if quiet else None


def recording_rows(client: Client, batch_id: str) -> Iterator[dict[str, Any]]:
    """The batch's per-file rows, page after page."""
    page: str | None = f"/api/v1/batches/{batch_id}/recordings/"
    while page:
        data = client.json("GET", page)
        yield from data["results"]
        page = data["next"]


def decision_counts(client: Client, batch_id: str) -> Counter[str]:
    """How many recordings got each decision: a class, `uncertain` or `re-record`."""
    # Predictions made before decisions existed have only their label.
    decided = (row.get("decision") or row.get("label") for row in recording_rows(client, batch_id))
    return Counter(decision for decision in decided if decision)


def _decisions_line(counts: Counter[str]) -> str:
    if not counts:
        return "none (no recording was analysed)"
    # Uncertain is always said, 0 included: it is what a reader looks for first.
    special = ["uncertain", *(["re-record"] if counts["re-record"] else [])]
    classes = sorted(name for name in counts if name not in special)
    return ", ".join(f"{name} {counts[name]}" for name in [*classes, *special])


def _status_line(batch: dict[str, Any]) -> str:
    p = batch["progress"]
    line = (
        f"{batch['id']} {batch['status']}: {p['total']} files, {p['done']} done, {p['failed']} failed, "
        f"{p['rejected']} rejected, {p['pending']} pending"
    )
    if batch.get("error_message"):
        line += f" ({batch['error_message']})"
    if batch.get("requeued_count"):
        line += f"; a worker stopped, {batch['requeued_count']} re-queued"
    if batch.get("report_error"):
        line += f"; reports not written: {batch['report_error']}"
    return line


def status(client: Client, args: argparse.Namespace) -> int:
    if args.batch is None:
        return cli_batches.list_batches(client, args)
    batch = client.json("GET", f"/api/v1/batches/{args.batch}/")
    print(_status_line(batch))
    return 0


def results(client: Client, args: argparse.Namespace) -> int:
    if args.format == "csv":
        link = report_link(client, args.batch, "csv")
        write_output(args.output, download(link))
        return 0
    rows = list(recording_rows(client, args.batch))
    write_output(args.output, [json.dumps(rows, indent=2).encode() + b"\n"])
    return 0


def report(client: Client, args: argparse.Namespace) -> int:
    link = report_link(client, args.batch, args.format)
    write_output(args.output or default_report_name(args.batch, args.format), download(link))
    return 0


def default_report_name(batch_id: str, fmt: str) -> str:
    # The CSV report is the per-file results table; the others summarise the batch.
    return f"{'results' if fmt == 'csv' else 'report'}-{batch_id}.{fmt}"


def report_link(client: Client, batch_id: str, fmt: str, *, wait_seconds: float = REPORT_WAIT_SECONDS) -> str:
    """The signed link to one of the batch's reports, waiting while a worker writes them."""
    deadline = time.monotonic() + wait_seconds
    path = f"/api/v1/batches/{batch_id}/reports/{fmt}/"
    while True:
        try:
            return str(client.json("GET", path, params={"redirect": "0"})["url"])
        except CliError as exc:
            if exc.status != 404:
                raise
        batch = client.json("GET", f"/api/v1/batches/{batch_id}/")  # a 404 here: no such batch
        _check_reports_coming(batch)
        if time.monotonic() >= deadline:
            raise CliError(f"the reports of batch {batch_id} are not written yet; try again in a minute")
        time.sleep(POLL_SECONDS)


def _check_reports_coming(batch: dict[str, Any]) -> None:
    """CliError saying why, unless the batch's reports are on their way."""
    name, state = batch["id"], batch["status"]
    if not batch["progress"]["finished"]:
        raise CliError(f"batch {name} is {state}: its reports are written when it finishes")
    if state not in REPORTED_STATUSES:
        raise CliError(f"batch {name} is {state}: it has no reports")
    if batch.get("report_error"):
        retry = f"; tried again at {batch['report_retry_at']}" if batch.get("report_retry_at") else ""
        raise CliError(f"the reports of batch {name} could not be written: {batch['report_error']}{retry}")


def download(link: str) -> Iterator[bytes]:
    """The blocks of a signed link's file; the request is made before a file is opened for them."""
    try:
        # The link is signed: it needs no token (and S3 refuses one).
        response = requests.get(link, stream=True, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise CliError(f"download failed: {exc}") from exc
    if response.status_code >= 400:
        raise CliError(f"download failed: {response.status_code} {response.reason}")
    return _blocks(response)


def _blocks(response: requests.Response) -> Iterator[bytes]:
    try:
        yield from response.iter_content(BLOCK)
    except requests.RequestException as exc:
        raise CliError(f"download failed: {exc}") from exc


def write_output(target: str | None, blocks: Iterable[bytes]) -> None:
    """Write to the file named, saying so on stderr, or to stdout when there is none or it is `-`."""
    if target is None or target == STDOUT:
        for block in blocks:
            sys.stdout.buffer.write(block)
        sys.stdout.buffer.flush()
        return
    path = Path(target)
    try:
        handle = path.open("wb")
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        with handle:
            for block in blocks:
                handle.write(block)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from exc
    except BaseException:
        # A download that failed half-way must not leave a file that looks complete.
        path.unlink(missing_ok=True)
        raise
    print(f"wrote {target} ({_size(path.stat().st_size)})", file=sys.stderr)


def _size(count: int) -> str:
    if count < 1000:
        return f"{count} bytes"
    return f"{count / 1000:.1f} kB" if count < 10**6 else f"{count / 10**6:.1f} MB"


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, like every other error of the client."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"lubdub: error: {one_line(message)} (see {self.prog} --help)\n")


def add_command(commands: Any, name: str, *, help: str, examples: Sequence[str]) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with examples."""
    return commands.add_parser(
        name,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=_examples(examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _examples(lines: Sequence[str]) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def batch_id(text: str) -> str:
    """An argparse type: a batch id is a UUID, so a typo is caught before the server is asked."""
    try:
        return str(uuid.UUID(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a batch id (lubdub list shows them)") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="lubdub",
        description="Heart-sound screening from the command line.\n\nThe server and token come from "
        "LUBDUB_URL and LUBDUB_TOKEN (make demo prints both),\nor --url and --token.",
        epilog=_examples(
            [
                "export LUBDUB_URL=http://127.0.0.1:8000 LUBDUB_TOKEN=<token>",
                'lubdub submit recordings/ --name "March clinic" --wait',
                "lubdub list",
                "lubdub report <batch> -o -",
                "lubdub <command> --help",
            ]
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", default=os.environ.get("LUBDUB_URL", ""), help="server (LUBDUB_URL)")
    parser.add_argument(
        "--token", default=os.environ.get("LUBDUB_TOKEN", ""), help="API token (LUBDUB_TOKEN)"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars (drawn only on a terminal anyway)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = add_command(
        commands,
        "submit",
        help="upload files, folders or a zip as one batch and print its id",
        examples=[
            'lubdub submit recordings/ --name "March clinic" --wait',
            'lubdub submit a0001.wav a0002.wav --site "Ward 3"',
            "lubdub submit archive.zip --model screening-3.0.0",
        ],
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--name")
    p.add_argument("--model", help="model version (default: the server's default; lubdub models lists them)")
    p.add_argument("--org", help="organisation slug, when you belong to several")
    p.add_argument(
        "--site", help="site name (or id) the recordings come from (default: the organisation's default site)"
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait until the batch is finished, then print its counts per decision and its web page",
    )
    p.set_defaults(run=submit)

    p = add_command(
        commands,
        "status",
        help="a batch's progress; without a batch, the recent batches (as lubdub list)",
        examples=["lubdub status 3f2b0c9e-7d1a-4c55-9a57-0d6f1e2b8a41", "lubdub status"],
    )
    p.add_argument("batch", nargs="?", type=batch_id)
    cli_batches.add_limit(p)
    p.set_defaults(run=status)

    cli_batches.add_list_command(commands)

    p = add_command(
        commands,
        "results",
        help="per-file results, to stdout unless -o names a file",
        examples=[
            "lubdub results <batch> > results.csv",
            "lubdub results <batch> --format json -o rows.json",
        ],
    )
    p.add_argument("batch", type=batch_id)
    p.add_argument("--format", choices=["csv", "json"], default="csv")
    p.add_argument("-o", "--output", help="file to write (default and '-': stdout)")
    p.set_defaults(run=results)

    p = add_command(
        commands,
        "report",
        help="download the batch report (waits a minute for one being written)",
        examples=[
            "lubdub report <batch>                  # report-<batch>.html",
            "lubdub report <batch> --format csv     # results-<batch>.csv",
            "lubdub report <batch> --format json -o - | jq .counts",
        ],
    )
    p.add_argument("batch", type=batch_id)
    p.add_argument(
        "-o",
        "--output",
        help="file to write, '-' for stdout (default: report-<batch>.html or .json, results-<batch>.csv)",
    )
    p.add_argument("--format", choices=["html", "csv", "json"], default="html")
    p.set_defaults(run=report)

    cli_batches.add_commands(commands)
    cli_reanalysis.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        client = Client(args.url, args.token)
        return int(args.run(client, args))
    except CliError as exc:
        print(f"lubdub: error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`lubdub results B | head`): stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # a file to upload that the system refused to read
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"lubdub: error: {where}{one_line(exc.strerror or str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lubdub: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
