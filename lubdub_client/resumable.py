"""Large uploads in parts, which survive a dropped connection (`lubdub submit` above a size).

The file is sent in parts, a few at a time, wherever the server says: straight
to S3 through presigned links, or to the server itself. A small state file in
the user's cache folder remembers the upload (its id, the file's size,
modification time and SHA-256), so running the same command again, or with
--resume, asks the server which parts it holds and sends only the others.

A folder or several files are zipped into the cache folder first, so that a
second run sends the same bytes.
"""

import concurrent.futures
import hashlib
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

from lubdub_client.errors import CliError
from lubdub_client.server import BLOCK, TIMEOUT, Client, explain
from lubdub_client.upload import CHANGED, Entries, zip_archive, zip_entries, zip_stream

MIB = 1024 * 1024
# Files above this go up in parts; smaller ones in one request, as before.
DEFAULT_THRESHOLD = 64 * MIB
PARALLEL_PARTS = 4
# Each part, and each request to the server, within one run: waits of 1, 2, 4, 8,
# 16 s between attempts, so a server restarting or a link down for half a minute
# costs a pause, not a rerun.
PART_ATTEMPTS = 6
FIRST_PART_BACKOFF_SECONDS = 1.0


def threshold() -> int:
    """LUBDUB_RESUMABLE_ABOVE (bytes), else 64 MiB."""
    raw = os.environ.get("LUBDUB_RESUMABLE_ABOVE", "")
    if not raw:
        return DEFAULT_THRESHOLD
    if not raw.isdigit():
        raise CliError(f"LUBDUB_RESUMABLE_ABOVE={raw!r} is not a number of bytes")
    return int(raw)


def cache_dir() -> Path:
    """LUBDUB_CACHE_DIR, else $XDG_CACHE_HOME/lubdub, else ~/.cache/lubdub."""
    if os.environ.get("LUBDUB_CACHE_DIR"):
        return Path(os.environ["LUBDUB_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lubdub"


class PartFailed(Exception):
    """One part could not be sent; `retry` when another attempt may succeed."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


def put_part(session: requests.Session, url: str, body: bytes, progress: Callable[[int], None]) -> str:
    """PUT one part's bytes; returns the etag the receiver answered (the MD5 of what it stored)."""
    try:
        response = session.put(url, data=_Counted(body, progress), timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise PartFailed(f"{type(exc).__name__}") from exc
    if response.status_code == 403 and "X-Amz-Signature" in url:
        raise PartFailed("the part's link expired")  # the next attempt asks for fresh links
    if response.status_code in (408, 429) or response.status_code >= 500:
        raise PartFailed(f"HTTP {response.status_code}")
    if response.status_code >= 400:
        raise PartFailed(explain(response), retry=False)
    if "ETag" in response.headers:
        return response.headers["ETag"].strip('"')
    return str(response.json().get("etag", ""))


class _Counted:
    """A part's body that reports what the connection took, for the progress bar."""

    def __init__(self, body: bytes, progress: Callable[[int], None]) -> None:
        self._body, self._progress, self._sent = memoryview(body), progress, 0

    def __len__(self) -> int:
        return len(self._body) - self._sent

    def read(self, size: int = -1) -> bytes:
        size = len(self) if size < 0 else size
        block = self._body[self._sent : self._sent + size].tobytes()
        self._sent += len(block)
        self._progress(len(block))
        return block


@dataclass
class Source:
    """The bytes to upload: a file as it is, or a zip made in the cache folder."""

    path: Path
    filename: str
    made: bool = False  # a zip of ours, deleted once uploaded


def large_source(paths: Sequence[Path], *, force: bool = False, quiet: bool | None = True) -> Source | None:
    """What to send in parts: the file, or the zip of the files, when above `threshold` (or `force`).

    None: small enough for one request.
    """
    if len(paths) == 1 and paths[0].is_file():
        large = paths[0].stat().st_size > threshold()
        return Source(paths[0], paths[0].name) if force or large else None
    entries = zip_entries(paths)
    if not force and len(zip_archive(entries)) <= threshold():
        return None
    name = (paths[0].resolve().name if len(paths) == 1 else "recordings") + ".zip"
    return Source(_zipped(entries, quiet=quiet), name, made=True)


def _zipped(entries: Entries, *, quiet: bool | None) -> Path:
    """The stored zip of `entries` in the cache folder, made once per set of files."""
    listing = [(name, str(path.resolve()), *_identity(path)) for name, path in entries]
    fingerprint = hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:32]
    target = cache_dir() / "uploads" / f"{fingerprint}.zip"
    size = len(zip_archive(entries))
    if target.exists() and target.stat().st_size == size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with (
        partial.open("wb") as out,
        tqdm(total=size, unit="B", unit_scale=True, desc="zip", disable=quiet) as bar,
    ):
        for block in zip_stream(entries):
            out.write(block)
            bar.update(len(block))
    if partial.stat().st_size != size:
        partial.unlink()
        raise CliError(CHANGED)
    partial.replace(target)
    return target


def _identity(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


class ResumableUpload:
    """One `lubdub submit` of a large file: open or resume, send the parts, complete."""

    def __init__(self, client: Client, source: Source, fields: dict[str, str], *, quiet: bool | None) -> None:
        self.client, self.source, self.fields, self.quiet = client, source, fields, quiet
        self.size, self.mtime_ns = _identity(source.path)
        key = json.dumps([client.url, str(source.path.resolve()), fields], sort_keys=True)
        self.state_path = cache_dir() / "uploads" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
        self.sent: list[int] = []  # part numbers this run sent, in the order they finished
        self.attempts = PART_ATTEMPTS
        self._local = threading.local()

    def run(self, *, resume_only: bool = False) -> Any:
        """Send what the server lacks and complete; the batch as the API describes it."""
        state = self._recorded()
        if state is None and resume_only:
            raise CliError(f"no interrupted upload of {self.source.path} to resume; run without --resume")
        upload = self._resume(state) if state else None
        if upload is None:
            upload = self._open()
        if upload["status"] == "completed":
            return self._finished(self._api("GET", upload["urls"]["batch"]))
        upload = self._send_missing(upload)
        return self._finished(self._complete(upload))

    # --- state kept between runs -------------------------------------------------

    def _recorded(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.state_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        if (state.get("size"), state.get("mtime_ns")) != (self.size, self.mtime_ns):
            return None  # the file changed: its parts on the server are not this file's
        return dict(state)

    def _record(self, **values: Any) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.state_path.with_suffix(".partial")
        partial.write_text(json.dumps({"size": self.size, "mtime_ns": self.mtime_ns, **values}))
        partial.replace(self.state_path)

    def _finished(self, batch: Any) -> Any:
        self.state_path.unlink(missing_ok=True)
        if self.source.made:
            self.source.path.unlink(missing_ok=True)
        return batch

    # --- the protocol --------------------------------------------------------------

    def _resume(self, state: dict[str, Any]) -> Any:
        if not state.get("upload"):
            return self._open(state)  # the open's answer was lost: the same key finds the upload
        try:
            upload = self._api("GET", f"/api/v1/uploads/{state['upload']}/")
        except CliError as exc:
            if exc.status != 404:
                raise
            upload = None
        if upload is None or upload["status"] in ("expired", "aborted"):
            print("lubdub: the earlier upload is no longer on the server; starting again", file=sys.stderr)
            self.state_path.unlink(missing_ok=True)
            return None
        held = sum(part["size"] for part in upload["parts"])
        print(f"lubdub: resuming: {held} of {self.size} bytes already on the server", file=sys.stderr)
        return upload

    def _open(self, state: dict[str, Any] | None = None) -> Any:
        state = state or {"sha256": self._sha256(), "key": uuid.uuid4().hex}
        self._record(**state)  # before the request: a retry after a lost answer reuses the key
        body = {"filename": self.source.filename, "size": self.size, "sha256": state["sha256"]}
        body.update({name: value for name, value in self.fields.items() if value})
        upload = self._api("POST", "/api/v1/uploads/", json=body, headers={"Idempotency-Key": state["key"]})
        self._record(**state, upload=upload["id"])
        return upload

    def _sha256(self) -> str:
        digest = hashlib.sha256()
        with (
            self.source.path.open("rb") as source,
            tqdm(total=self.size, unit="B", unit_scale=True, desc="checksum", disable=self.quiet) as bar,
        ):
            while block := source.read(BLOCK):
                digest.update(block)
                bar.update(len(block))
        return digest.hexdigest()

    def _send_missing(self, upload: Any, *, also: Sequence[int] = ()) -> Any:
        todo = sorted(set(upload["missing"]) | set(also))
        if not todo:
            return upload
        held = self.size - sum(self._length(upload, n) for n in todo)
        with tqdm(
            total=self.size, initial=held, unit="B", unit_scale=True, desc="upload", disable=self.quiet
        ) as bar:
            lock = threading.Lock()

            def progress(count: int) -> None:
                with lock:
                    bar.update(count)

            links = dict(upload["part_urls"])
            with concurrent.futures.ThreadPoolExecutor(PARALLEL_PARTS) as pool:
                futures = {pool.submit(self._send, upload, links, n, progress): n for n in todo}
                try:
                    for future in concurrent.futures.as_completed(futures):
                        future.result()
                        self.sent.append(futures[future])
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        return self._api("GET", upload["urls"]["self"])

    def _send(self, upload: Any, links: dict[str, str], number: int, progress: Callable[[int], None]) -> None:
        body = self._read_part(upload, number)
        expected = hashlib.md5(body, usedforsecurity=False).hexdigest()
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                time.sleep(FIRST_PART_BACKOFF_SECONDS * 2 ** (attempt - 2))
                # The part may be stored with only its answer lost: ask before sending it again.
                fresh = self._api("GET", upload["urls"]["self"])
                if any(p["number"] == number and p["etag"] == expected for p in fresh["parts"]):
                    progress(len(body))
                    return
                links.update(fresh["part_urls"])
            sent = 0

            def counted(count: int) -> None:
                nonlocal sent
                sent += count
                progress(count)

            try:
                etag = put_part(self._session(upload), links[str(number)], body, counted)
                if etag and etag != expected:
                    raise PartFailed(f"the server stored part {number} with another MD5")
                return
            except PartFailed as failed:
                progress(-sent)
                if not failed.retry or attempt == self.attempts:
                    done = len(self.sent)
                    raise CliError(
                        f"upload interrupted at part {number} ({failed}); {done} parts sent in this run: "
                        "run the same command again (or add --resume) to send the rest"
                    ) from failed

    def _api(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request to the server, tried again while it cannot be reached (every one here is repeatable)."""
        for attempt in range(1, self.attempts + 1):
            try:
                return self.client.json(method, path, **kwargs)
            except CliError as exc:
                if exc.status is not None or attempt == self.attempts:
                    raise
            time.sleep(FIRST_PART_BACKOFF_SECONDS * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def _session(self, upload: Any) -> requests.Session:
        """One session per thread; the API token only on the server's own links."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            if upload["transport"] == "app":
                session.headers["Authorization"] = self.client.session.headers["Authorization"]
            session.headers["Content-Type"] = "application/octet-stream"
            self._local.session = session
        return session

    def _length(self, upload: Any, number: int) -> int:
        return int(min(upload["part_size"], self.size - (number - 1) * upload["part_size"]))

    def _read_part(self, upload: Any, number: int) -> bytes:
        with self.source.path.open("rb") as source:
            source.seek((number - 1) * upload["part_size"])
            body = source.read(self._length(upload, number))
        if len(body) != self._length(upload, number) or _identity(self.source.path) != (
            self.size,
            self.mtime_ns,
        ):
            raise CliError(CHANGED)
        return body

    def _complete(self, upload: Any) -> Any:
        """Complete; after a checksum mismatch send again the parts that differ, once."""
        for retry in (True, False):
            try:
                return self._api(
                    "POST", upload["urls"]["complete"], headers={"Idempotency-Key": upload["id"]}
                )
            except CliError as exc:
                if not retry or exc.status not in (409, 422):
                    raise
            upload = self._api("GET", upload["urls"]["self"])
            differing = [part["number"] for part in upload["parts"] if not self._matches(upload, part)]
            if upload["error_code"] == "checksum_mismatch" and not differing and not upload["missing"]:
                raise CliError(
                    f"{self.source.path}: its SHA-256 is no longer the one declared (did it change?); "
                    f"delete {self.state_path} to upload it afresh"
                )
            upload = self._send_missing(upload, also=differing)
        raise AssertionError("unreachable")

    def _matches(self, upload: Any, part: Any) -> bool:
        body = self._read_part(upload, part["number"])
        return bool(hashlib.md5(body, usedforsecurity=False).hexdigest() == part["etag"])
