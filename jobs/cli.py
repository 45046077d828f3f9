"""`lubdub`: submit recordings to a LubDub server and fetch what it found.

    lubdub submit PATH... [--name N] [--model V] [--site S] [--wait]
    lubdub status BATCH
    lubdub results BATCH [--format csv|json] [-o FILE]
    lubdub report BATCH -o report.html

The server and token come from LUBDUB_URL and LUBDUB_TOKEN, or --url/--token.
A folder or several files are zipped while they stream (nothing is written to
disk first); errors are one line on stderr and a non-zero exit status. While
the server answers 503 (a dependency is down) reads and the upload are tried
again a few times, waiting longer each time; the upload carries an
Idempotency-Key, so a retry never creates a second batch.
"""

import argparse
import io
import json
import os
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import requests
from tqdm import tqdm

from jobs import cli_reanalysis

BLOCK = 1024 * 1024
POLL_SECONDS = 1.0
TIMEOUT = (10, 300)
# Answers that mean "try again shortly" (an outage, a proxy without its upstream).
RETRY_STATUSES = frozenset({502, 503, 504})
MAX_ATTEMPTS = 5
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3"}


class CliError(Exception):
    pass


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
        kind = "application/zip" if path.suffix.lower() == ".zip" else "application/octet-stream"
        return MultipartBody(fields, path.name, kind, lambda: file_stream(path), path.stat().st_size)
    entries = zip_entries(paths)
    size = sum(len(block) for block in zip_stream(entries))
    name = (paths[0].resolve().name if len(paths) == 1 else "recordings") + ".zip"
    return MultipartBody(fields, name, "application/zip", lambda: zip_stream(entries), size)


# --- the server ----------------------------------------------------------------


class Client:
    def __init__(self, url: str, token: str, *, sleep: Any = time.sleep) -> None:
        if not url:
            raise CliError("no server: set LUBDUB_URL or pass --url")
        if not token:
            raise CliError("no token: set LUBDUB_TOKEN or pass --token (manage.py create_api_token USER)")
        self.url = url.rstrip("/")
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
            raise CliError(_explain(response))
        return response

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, url, timeout=TIMEOUT, **kwargs)
        except requests.ConnectionError as exc:
            raise CliError(f"cannot reach {self.url} ({type(exc).__name__})") from exc
        except requests.Timeout as exc:
            raise CliError(f"{self.url} did not answer in time") from exc

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()


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
    return f"server said {response.status_code}: {detail or response.reason}"


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
    with tqdm(total=body.file_size, unit="B", unit_scale=True, desc="upload", disable=args.quiet) as bar:
        body.progress = bar
        # One key per invocation: the server answers a retry with the batch it already made.
        headers = {"Content-Type": body.content_type, "Idempotency-Key": uuid.uuid4().hex}
        batch = client.json("POST", "/api/v1/batches/", data=body, headers=headers)
    print(batch["id"])
    if args.wait:
        batch = wait(client, batch["id"], quiet=args.quiet)
        print(_status_line(batch), file=sys.stderr)
        return 0 if batch["status"] in ("completed", "completed_with_errors") else 1
    return 0


def wait(client: Client, batch_id: str, *, quiet: bool, poll: float = POLL_SECONDS) -> dict[str, Any]:
    with tqdm(total=None, unit="file", desc="analyse", disable=quiet) as bar:
        while True:
            batch = client.json("GET", f"/api/v1/batches/{batch_id}/")
            progress = batch["progress"]
            bar.total = max(progress["total"] - progress["rejected"], 0)
            bar.n = progress["done"] + progress["failed"] + progress["skipped"]
            bar.refresh()
            if progress["finished"]:
                return batch
            time.sleep(poll)


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
    batch = client.json("GET", f"/api/v1/batches/{args.batch}/")
    print(_status_line(batch))
    return 0


def results(client: Client, args: argparse.Namespace) -> int:
    if args.format == "csv":
        with _output(args.output) as out:
            _download(client, f"/api/v1/batches/{args.batch}/reports/csv/", out)
        return 0
    rows, page = [], f"/api/v1/batches/{args.batch}/recordings/"
    while page:
        data = client.json("GET", page)
        rows += data["results"]
        page = data["next"]
    with _output(args.output) as out:
        out.write(json.dumps(rows, indent=2).encode() + b"\n")
    return 0


def report(client: Client, args: argparse.Namespace) -> int:
    with _output(args.output) as out:
        _download(client, f"/api/v1/batches/{args.batch}/reports/{args.format}/", out)
    return 0


def _download(client: Client, path: str, out: IO[bytes]) -> None:
    link = client.json("GET", path, params={"redirect": "0"})["url"]
    # The link is signed: it needs no token (and S3 refuses one).
    response = requests.get(link, stream=True, timeout=TIMEOUT)
    if response.status_code >= 400:
        raise CliError(f"download failed: {response.status_code} {response.reason}")
    for block in response.iter_content(BLOCK):
        out.write(block)


class _output:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self.handle: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        self.handle = open(self.path, "wb") if self.path else sys.stdout.buffer  # noqa: SIM115
        return self.handle

    def __exit__(self, *exc: object) -> None:
        if self.path and self.handle is not None:
            self.handle.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lubdub", description="Heart-sound screening from the command line."
    )
    parser.add_argument("--url", default=os.environ.get("LUBDUB_URL", ""), help="server (LUBDUB_URL)")
    parser.add_argument(
        "--token", default=os.environ.get("LUBDUB_TOKEN", ""), help="API token (LUBDUB_TOKEN)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("submit", help="upload files, folders or a zip as one batch")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--name")
    p.add_argument("--model", help="model version (default: the server's default)")
    p.add_argument("--org", help="organisation slug, when you belong to several")
    p.add_argument(
        "--site", help="site name (or id) the recordings come from (default: the organisation's default site)"
    )
    p.add_argument("--wait", action="store_true", help="wait until the batch is finished")
    p.set_defaults(run=submit)

    p = commands.add_parser("status", help="a batch's progress")
    p.add_argument("batch")
    p.set_defaults(run=status)

    p = commands.add_parser("results", help="per-file results")
    p.add_argument("batch")
    p.add_argument("--format", choices=["csv", "json"], default="csv")
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    p.set_defaults(run=results)

    p = commands.add_parser("report", help="download the batch report")
    p.add_argument("batch")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--format", choices=["html", "csv", "json"], default="html")
    p.set_defaults(run=report)
    cli_reanalysis.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        client = Client(args.url, args.token)
        return int(args.run(client, args))
    except CliError as exc:
        print(f"lubdub: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lubdub: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
