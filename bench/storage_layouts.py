"""Storage traffic of three ways to keep a batch's audio, measured on the configured storage.

    python -m bench.storage_layouts [--recordings 600] [--deflated] [--layouts archive,packs]

with the app's environment.

Every layout starts from the same uploaded zip of real recordings (stored, as
``lubdub submit`` sends it, or deflated with ``--deflated``, as zip tools make it) and
does what ingest and analysis do with storage, nothing else (no database, no
model): ingest reads the archive as the app's ingest does (jobs.services.zipstream:
the central directory from the end of the object, the members from one streamed
read; ``--ranged`` reads it in 8 MiB ranged blocks instead, as ingest did before)
and hashes every member; analysis reads the members a chunk (64) at a time,
two chunks at once as two worker processes would, and checks each against its
hash.

- ``per-file``: ingest writes each member to an object of its own, analysis
  reads each (what the platform did first);
- ``archive``: the upload is the store; ingest writes nothing, analysis reads
  a chunk's members with one ranged GET of the archive (and inflates them when
  the zip is deflated);
- ``packs``: ingest writes one object per 128 members (two chunks), analysis
  reads a chunk with one ranged GET of its pack.

Printed per layout and phase: object-store requests (counted with a boto3
event hook on the app's own client), wall seconds, this process's CPU seconds
and the S3-API server's CPU seconds (read from /proc, when it runs here).
"""

import argparse
import contextlib
import hashlib
import io
import os
import shutil
import tempfile
import time
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHUNK = 64
PACK_MEMBERS = 2 * CHUNK
UPLOADS_IN_FLIGHT = 8
WORKERS = 2
ARCHIVE_READ_BYTES = 8 * 1024 * 1024


@dataclass
class Member:
    sha256: str
    key: str = ""
    offset: int = 0
    length: int = 0
    compression: int = zipfile.ZIP_STORED


@dataclass
class Phase:
    requests: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    server_cpu: float = 0.0


@dataclass
class Layout:
    name: str
    ingest: Callable[[str, str], list[Member]]
    read_chunk: Callable[[list[Member]], list[bytes]]
    phases: dict[str, Phase] = field(default_factory=dict)


class Counter:
    """Requests the app's S3 client sends (retries included), and the port of the server they go to."""

    def __init__(self, server_port: str) -> None:
        self.count = 0
        self.server_port = server_port

    def __call__(self, **_: Any) -> None:
        self.count += 1


def server_cpu(port: str) -> float:
    """CPU seconds of the S3-API server on this machine listening on `port`; 0 when none is seen.

    Matched by port, not by name alone: tests start private servers of their own.
    """
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        server = any(b"moto_server" in argument or b"minio" in argument for argument in arguments)
        # moto_server -p PORT, minio server --address HOST:PORT
        if server and any(argument.split(b":")[-1] == port.encode() for argument in arguments):
            fields = stat[stat.rfind(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def measured(counter: Counter, run: Callable[[], Any]) -> tuple[Any, Phase]:
    requests, wall, cpu = counter.count, time.perf_counter(), time.process_time()
    server = server_cpu(counter.server_port)
    result = run()
    return result, Phase(
        requests=counter.count - requests,
        wall=time.perf_counter() - wall,
        cpu=time.process_time() - cpu,
        server_cpu=server_cpu(counter.server_port) - server,
    )


RANGED_READS = False  # --ranged: the reader ingest used before zipstream


def members_of(upload_key: str) -> Iterator[tuple[zipfile.ZipInfo, bytes, Any]]:
    """Each member's info and bytes as ingest reads them, with its location in the archive."""
    from jobs import storage
    from jobs.services import archive, zipstream

    if not RANGED_READS:
        with zipstream.Directory(upload_key) as directory, zipstream.Body(upload_key, directory.size) as body:
            for info in sorted(directory.zipped.infolist(), key=lambda info: info.header_offset):
                with body.open(info) as source:
                    data = source.read()
                # Where the data lay in the stream: after the member's local header.
                yield info, data, archive.Location(body.data_offset, info.compress_size, info.compress_type)
        return
    with storage.open_stream(upload_key, buffer_size=ARCHIVE_READ_BYTES) as upload:
        with zipfile.ZipFile(upload) as zipped:
            for info in zipped.infolist():
                location = archive.member_location(upload, info)
                yield info, zipped.read(info), location


def ingest_per_file(upload_key: str, prefix: str) -> list[Member]:
    from jobs import storage

    found = []
    with ThreadPoolExecutor(UPLOADS_IN_FLIGHT) as pool:
        futures = []
        for _, data, _ in members_of(upload_key):
            member = Member(hashlib.sha256(data).hexdigest())
            member.key, member.length = f"{prefix}/recordings/{member.sha256}", len(data)
            futures.append(pool.submit(storage.put_bytes, member.key, data))
            found.append(member)
        for future in futures:
            future.result()
    return found


def ingest_archive(upload_key: str, prefix: str) -> list[Member]:
    found = []
    for _, data, location in members_of(upload_key):
        sha256 = hashlib.sha256(data).hexdigest()
        found.append(Member(sha256, upload_key, location.offset, location.length, location.compression))
    return found


def ingest_packs(upload_key: str, prefix: str) -> list[Member]:
    from jobs import storage

    found: list[Member] = []
    with ThreadPoolExecutor(UPLOADS_IN_FLIGHT) as pool:
        futures = []
        pack, key = io.BytesIO(), f"{prefix}/packs/{uuid.uuid4()}"
        for _, data, _ in members_of(upload_key):
            found.append(Member(hashlib.sha256(data).hexdigest(), key, pack.tell(), len(data)))
            pack.write(data)
            if len(found) % PACK_MEMBERS == 0:
                futures.append(pool.submit(storage.put_bytes, key, pack.getvalue()))
                pack, key = io.BytesIO(), f"{prefix}/packs/{uuid.uuid4()}"
        if pack.tell():
            futures.append(pool.submit(storage.put_bytes, key, pack.getvalue()))
        for future in futures:
            future.result()
    storage.delete(upload_key)  # the packs hold the audio now
    return found


def read_each(chunk: list[Member]) -> list[bytes]:
    from jobs import storage

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(storage.read_bytes, [member.key for member in chunk]))


def read_spans(chunk: list[Member]) -> list[bytes]:
    """One ranged GET per object the chunk's members lie in, sliced into the members."""
    from jobs import storage

    out = []
    by_key: dict[str, list[Member]] = {}
    for member in chunk:
        by_key.setdefault(member.key, []).append(member)
    for key, members in by_key.items():
        start = min(member.offset for member in members)
        end = max(member.offset + member.length for member in members)
        span = storage.read_range(key, start, end - start)
        out += [inflated(span[m.offset - start : m.offset - start + m.length], m) for m in members]
    return out


def inflated(raw: bytes, member: Member) -> bytes:
    if member.compression == zipfile.ZIP_STORED:
        return raw
    return zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw)


def analyse(members: list[Member], read_chunk: Callable[[list[Member]], list[bytes]]) -> int:
    chunks = [members[i : i + CHUNK] for i in range(0, len(members), CHUNK)]

    def one(chunk: list[Member]) -> int:
        payloads = read_chunk(chunk)
        wrong = sum(hashlib.sha256(p).hexdigest() != m.sha256 for p, m in zip(payloads, chunk, strict=True))
        if wrong:
            raise AssertionError(f"{wrong} members read back wrong")
        return len(payloads)

    with ThreadPoolExecutor(WORKERS) as pool:
        return sum(pool.map(one, chunks))


def zipped(paths: list[Path], compression: int) -> Path:
    handle = tempfile.NamedTemporaryFile(suffix=".zip", delete=False)  # removed by the caller
    with handle, zipfile.ZipFile(handle, "w", compression=compression) as archive:
        for index, path in enumerate(paths):
            archive.write(path, f"{index:05d}-{path.name}")
    return Path(handle.name)


def run_layout(layout: Layout, archive_path: Path, counter: Counter) -> None:
    from jobs import storage

    prefix = f"bench-layouts/{uuid.uuid4()}"
    upload_key = f"{prefix}/upload.zip"
    with archive_path.open("rb") as handle:
        _, layout.phases["upload"] = measured(counter, lambda: storage.put(upload_key, handle))
    members, layout.phases["ingest"] = measured(counter, lambda: layout.ingest(upload_key, prefix))
    read, layout.phases["analysis"] = measured(counter, lambda: analyse(members, layout.read_chunk))
    assert read == len(members)
    for key in {upload_key, *(member.key for member in members)}:
        try:
            storage.delete(key)
        except FileNotFoundError:
            continue
    if not storage.uses_s3():
        # Deleting files leaves their folders behind on the filesystem backend.
        from django.core.files.storage import default_storage

        folder = Path(default_storage.path(prefix))
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # bench-layouts/, unless another run is using it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=600)
    parser.add_argument(
        "--deflated", action="store_true", help="upload a deflated zip instead of a stored one"
    )
    parser.add_argument(
        "--ranged",
        action="store_true",
        help="read the upload in 8 MiB ranged blocks, as ingest did before",
    )
    parser.add_argument(
        "--layouts", default="per-file,archive,packs", help="comma-separated, from per-file, archive, packs"
    )
    options = parser.parse_args()
    global RANGED_READS
    RANGED_READS = options.ranged

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    import django

    django.setup()
    from django.conf import settings

    from jobs import storage
    from jobs.management.commands.bench import recordings

    storage.ensure_bucket()
    counter = Counter(str(urlsplit(settings.S3_ENDPOINT_URL or "").port or ""))
    if storage.uses_s3():
        storage._s3_client().meta.events.register("before-send.s3", counter)
    paths, source = recordings(options.recordings)
    compression = zipfile.ZIP_DEFLATED if options.deflated else zipfile.ZIP_STORED
    archive_path = zipped(paths, compression)
    kind = f"S3 at {settings.S3_ENDPOINT_URL or 'AWS'}" if storage.uses_s3() else "filesystem"
    zip_kind = "deflated" if options.deflated else "stored"
    mebibytes = archive_path.stat().st_size / 2**20
    print(f"{len(paths)} recordings from {source}, {zip_kind} zip of {mebibytes:.1f} MiB; {kind}")
    known = {
        "per-file": Layout("per-file", ingest_per_file, read_each),
        "archive": Layout("archive", ingest_archive, read_spans),
        "packs": Layout("packs", ingest_packs, read_spans),
    }
    layouts = [known[name] for name in options.layouts.split(",")]
    try:
        for layout in layouts:
            run_layout(layout, archive_path, counter)
    finally:
        archive_path.unlink()
    print(
        f"{'layout':<10} {'phase':<9} {'requests':>9} {'per rec':>8} {'wall s':>7} {'cpu s':>6} {'server':>7}"
    )
    for layout in layouts:
        for phase_name, phase in layout.phases.items():
            print(
                f"{layout.name:<10} {phase_name:<9} {phase.requests:>9} {phase.requests / len(paths):>8.3f} "
                f"{phase.wall:>7.2f} {phase.cpu:>6.2f} {phase.server_cpu:>7.2f}"
            )


if __name__ == "__main__":
    main()
