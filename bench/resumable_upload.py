"""A large archive sent by `lubdub submit` through cut connections: parts sent again, web memory.

    python -m bench.resumable_upload [--size-mib 256] [--storage filesystem|s3] [--cuts 2] [--down-seconds 3]

with the app's environment (PostgreSQL; Redis for the ingest the batch queues).

The benchmark starts a web of its own (gunicorn, as `make up` runs it but with
one process of 8 threads) on a database of its own, on filesystem storage or on
an S3-API server of its own, with a relay in front of each: the client reaches
the web and storage only through them. It makes a stored zip of real recordings
of about ``--size-mib`` (2048 for the issue's 2 GiB) and runs ``lubdub submit``
on it. Each cut, when a third and two thirds of the parts are stored, drops
every connection through the relays and refuses new ones for
``--down-seconds``, and kills the web (SIGKILL) and starts it again. Whenever
``lubdub submit`` gives up, it is run again, as a person would.

Reported: the parts stored more than once (finished parts sent again, target 0),
counted from the receiver's own log (the web's access log, or the S3-API
server's request log), the runs of `lubdub submit`, wall seconds, and the web's
resident memory (gunicorn's master and its worker, once warmed up by a one-byte
upload opened and aborted) before the upload, at its peak, and after, and for
each web process. Nobody analyses the batch: no worker runs on this database,
and the batch is deleted at the end.
"""

import argparse
import collections
import contextlib
import hashlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SAMPLES = ROOT / "samples" / "physionet"
WORK = ROOT / "var" / "bench" / "resumable"
DATABASE = "lubdub_bench_uploads"
MIB = 1024 * 1024
# A part stored: the web's access log, or the S3-API server's request log.
STORED_PART = re.compile(r'"PUT [^"]*?(?:/parts/(\d+)/|[?&]partNumber=(\d+))[^"]*" 200 ')


class Relay:
    """A TCP relay to one upstream that can drop every connection and refuse new ones for a while."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.down_until = 0.0
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self, seconds: float) -> None:
        self.down_until = time.monotonic() + seconds
        with self.lock:
            for sock in list(self.open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.open.clear()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            if time.monotonic() < self.down_until:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                client.close()  # a reset, as from a link that is down
                continue
            threading.Thread(target=self._pump, args=(client,), daemon=True).start()

    def _pump(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        server.settimeout(None)
        with self.lock:
            self.open.update((client, server))
        pair = {client: server, server: client}
        try:
            while True:
                readable, _, _ = select.select(list(pair), [], [], 1.0)
                for sock in readable:
                    data = sock.recv(256 * 1024)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            with self.lock:
                self.open.difference_update((client, server))
            for sock in (client, server):
                sock.close()


def make_archive(path: Path, size: int) -> Path:
    """A stored zip of copies of the sample recordings, at most `size` bytes; kept for the next run."""
    if path.exists() and size - 2 * MIB < path.stat().st_size <= size:
        return path
    recordings = [(p.name, p.read_bytes()) for p in sorted(SAMPLES.glob("*.wav"))]
    partial = path.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
        copy, written = 0, 0
        # Each member costs its data, a local header and a directory entry (about 150 bytes).
        while written + len(recordings[copy % len(recordings)][1]) + 1024 < size:
            name, data = recordings[copy % len(recordings)]
            archive.writestr(f"copy{copy // len(recordings):05d}/{name}", data)
            written += len(data) + 160
            copy += 1
    partial.replace(path)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - loopback
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children, KiB (from /proc)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            status = Path(f"/proc/{current}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status)[1])  # type: ignore[index]
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
    return total


class Web:
    """gunicorn as `make up` runs it (gthread, 8 threads) but with one process, so its memory is one
    process's; killed and started again on demand."""

    def __init__(self, env: dict[str, str], access_log: Path, token: str) -> None:
        self.env, self.access_log, self.token, self.port = env, access_log, token, free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.lives: list[dict[str, int]] = []  # per process: RSS once warmed up, peak

    def start(self) -> None:
        command = [str(BIN / "gunicorn"), "config.wsgi", "-b", f"127.0.0.1:{self.port}"]
        command += ["--worker-class", "gthread", "--workers", "1", "--threads", "8", "--timeout", "900"]
        command += ["--access-logfile", str(self.access_log), "--error-logfile", str(WORK / "web.log")]
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, start_new_session=True)
        wait_for(f"http://127.0.0.1:{self.port}/login/")
        self._warm_up()
        ready = rss_kib(self.process.pid)
        self.lives.append({"ready_kib": ready, "peak_kib": ready})

    def _warm_up(self) -> None:
        """Open and abort a one-byte resumable upload: the API, the models and the storage
        client are loaded before "ready" is measured, so the peak is what the upload adds."""
        body = json.dumps({"filename": "warm-up.wav", "size": 1, "sha256": hashlib.sha256(b"x").hexdigest()})
        opened = json.load(self._call("POST", "/api/v1/uploads/", body.encode()))
        self._call("DELETE", f"/api/v1/uploads/{opened['id']}/")

    def _call(self, method: str, path: str, body: bytes | None = None) -> Any:
        headers = {"Authorization": f"Token {self.token}", "Content-Type": "application/json"}
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", body, headers, method=method)
        return urllib.request.urlopen(request, timeout=60)  # noqa: S310 - loopback

    def kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def sample(self) -> int:
        if self.process is None:
            return 0
        now = rss_kib(self.process.pid)
        self.lives[-1]["peak_kib"] = max(self.lives[-1]["peak_kib"], now)
        return now


def stored_parts(log: Path) -> collections.Counter[int]:
    """Part number -> times the receiver stored it (answered 200)."""
    counts: collections.Counter[int] = collections.Counter()
    with contextlib.suppress(FileNotFoundError):
        for match in STORED_PART.finditer(re.sub(r"\x1b\[[0-9;]*m", "", log.read_text(errors="replace"))):
            counts[int(match[1] or match[2])] += 1
    return counts


def bench_database(base_url: str) -> str:
    import psycopg2

    connection = psycopg2.connect(base_url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        cursor.execute(f"CREATE DATABASE {DATABASE}")
    connection.close()
    return urlunsplit(urlsplit(base_url)._replace(path=f"/{DATABASE}"))


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip()


@contextlib.contextmanager
def own_s3(env: dict[str, str]) -> Iterator[tuple[Relay, Path]]:
    """An S3-API server of the benchmark's own (its request log is the count), behind a relay."""
    port, log = free_port(), WORK / "s3.log"
    with log.open("w") as out:
        server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stderr=out)
    try:
        wait_for(f"http://127.0.0.1:{port}/moto-api/")
        relay = Relay(("127.0.0.1", port))
        env.update(
            S3_ENDPOINT_URL=f"http://127.0.0.1:{relay.port}",
            S3_BUCKET="lubdub-bench",
            S3_CREATE_BUCKET="1",
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 - the benchmark's own local server
        )
        yield relay, log
    finally:
        server.terminate()
        server.wait(timeout=30)


def run(args: argparse.Namespace) -> dict[str, Any]:
    WORK.mkdir(parents=True, exist_ok=True)
    for old in ("web-access.log", "web.log", "s3.log"):
        (WORK / old).unlink(missing_ok=True)
    archive = make_archive(WORK / f"upload-{args.size_mib}mib.zip", args.size_mib * MIB)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.base"}
    env["DATABASE_URL"] = bench_database(os.environ["DATABASE_URL"])
    env["LUBDUB_UPLOAD_PART_BYTES"] = str(args.part_mib * MIB)
    if archive.stat().st_size > 2 * 1024 * MIB:  # above the default limit: raise it
        env["LUBDUB_MAX_UPLOAD_BYTES"] = str(archive.stat().st_size)
    with contextlib.ExitStack() as stack:
        if args.storage == "s3":
            s3_relay, receiver_log = stack.enter_context(own_s3(env))
        else:
            media = WORK / "media"
            subprocess.run(["rm", "-rf", str(media)], check=True)
            env.update(S3_ENDPOINT_URL="", S3_BUCKET="", LUBDUB_MEDIA_ROOT=str(media))
            s3_relay, receiver_log = None, WORK / "web-access.log"
        manage(env, "migrate", "--noinput")
        manage(env, "prepare_storage")
        manage(env, "ensure_default_model")
        token = manage(env, "create_api_token", "bench-uploader", "--org", "Bench uploads")
        web = Web(env, WORK / "web-access.log", token)
        web.start()
        stack.callback(web.kill)
        web_relay = Relay(("127.0.0.1", web.port))
        return measure(args, archive, env, token, web, web_relay, s3_relay, receiver_log)
    raise AssertionError("unreachable")


def measure(
    args: argparse.Namespace,
    archive: Path,
    env: dict[str, str],
    token: str,
    web: Web,
    web_relay: Relay,
    s3_relay: Relay | None,
    receiver_log: Path,
) -> dict[str, Any]:
    size = archive.stat().st_size
    parts = -(-size // (args.part_mib * MIB))
    before_kib = web.sample()
    client_env = {
        **os.environ,
        "LUBDUB_URL": f"http://127.0.0.1:{web_relay.port}",
        "LUBDUB_TOKEN": token,
        "LUBDUB_CACHE_DIR": str(WORK / "cache"),
        "LUBDUB_RESUMABLE_ABOVE": "0",  # in parts whatever the size
    }
    subprocess.run(["rm", "-rf", str(WORK / "cache")], check=True)
    cuts: list[dict[str, Any]] = []
    finished = threading.Event()

    def cut_and_watch() -> None:
        while not finished.is_set():
            web.sample()
            held = len(stored_parts(receiver_log))
            if len(cuts) < args.cuts and held >= parts * (len(cuts) + 1) / (args.cuts + 1):
                began = time.monotonic()
                for relay in filter(None, (web_relay, s3_relay)):
                    relay.cut(args.down_seconds)
                web.kill()
                time.sleep(args.down_seconds)
                web.start()
                cuts.append({"at_parts": held, "web_back_after_s": round(time.monotonic() - began, 1)})
            time.sleep(0.2)

    watcher = threading.Thread(target=cut_and_watch, daemon=True)
    started = time.monotonic()
    watcher.start()
    runs: list[dict[str, Any]] = []
    batch_id = ""
    while not batch_id and len(runs) < args.max_runs:
        done = subprocess.run(
            [str(BIN / "lubdub"), "-q", "submit", str(archive), "--name", "resumable upload bench"],
            env=client_env,
            capture_output=True,
            text=True,
            check=False,
        )
        runs.append({"exit": done.returncode, "said": done.stderr.strip().splitlines()[-1:]})
        batch_id = done.stdout.strip() if done.returncode == 0 else ""
        if not batch_id:
            time.sleep(1)
    wall = time.monotonic() - started
    finished.set()
    watcher.join()
    after_kib = web.sample()
    counts = stored_parts(receiver_log)
    if batch_id:  # nobody analyses it here: delete it and its upload
        request = urllib.request.Request(
            f"http://127.0.0.1:{web.port}/api/v1/batches/{batch_id}/",
            method="DELETE",
            headers={"Authorization": f"Token {token}"},
        )
        urllib.request.urlopen(request, timeout=60)  # noqa: S310 - loopback
    return {
        "storage": args.storage,
        "size_bytes": size,
        "part_bytes": args.part_mib * MIB,
        "parts": parts,
        "completed": bool(batch_id),
        "cuts": cuts,
        "client_runs": runs,
        "parts_stored": len(counts),
        "finished_parts_sent_again": sum(n - 1 for n in counts.values()),
        "wall_s": round(wall, 1),
        "web_rss_mib": {
            "before": round(before_kib / 1024, 1),
            "peak": round(max(life["peak_kib"] for life in web.lives) / 1024, 1),
            "after": round(after_kib / 1024, 1),
            "per_process": [
                {"ready": round(life["ready_kib"] / 1024, 1), "peak": round(life["peak_kib"] / 1024, 1)}
                for life in web.lives
            ],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256, help="the archive's size (2048: 2 GiB)")
    parser.add_argument("--storage", choices=["filesystem", "s3"], default="filesystem")
    parser.add_argument("--part-mib", type=int, default=16, help="LUBDUB_UPLOAD_PART_BYTES, in MiB")
    parser.add_argument("--cuts", type=int, default=2)
    parser.add_argument("--down-seconds", type=float, default=3.0)
    parser.add_argument("--max-runs", type=int, default=10, help="runs of lubdub submit before giving up")
    result = run(parser.parse_args())
    rss = result["web_rss_mib"]
    print(
        f"resumable upload, {result['storage']} storage: {result['size_bytes'] / MIB:.0f} MiB in "
        f"{result['parts']} parts, {len(result['cuts'])} cuts, "
        f"{len(result['client_runs'])} runs of lubdub submit, "
        f"{result['wall_s']} s; completed: {result['completed']}; finished parts sent again: "
        f"{result['finished_parts_sent_again']}; web RSS {rss['before']} MiB before, {rss['peak']} peak, "
        f"{rss['after']} after"
    )
    print(json.dumps(result))
    if not result["completed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
