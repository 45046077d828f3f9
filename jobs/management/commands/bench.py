"""`make bench`: the platform end to end against its two reference loops.

Needs the app running (`make up`). Submits an archive of N real recordings
(../shared/data when present, otherwise the committed sample repeated) through
the API and times upload to report ready; meanwhile single-file uploads measure
interactive latency. The same recordings, as files in a folder, then go
through `python -m ml predict` (the reference: the CLI with the workers' bundle)
and through the `lubdub` client (`lubdub submit --wait`, then the results
downloaded), while the S3-API server's log counts the object-store requests
(bench.client_pass, bench.s3_requests). Last come the compute limit (the
worker's decode + batched classify, no queue) and the naive per-file loop
(librosa + model.predict). Peak resident memory of the web and worker processes
is read for a small and a large archive.
"""

import csv
import os
import random
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from bench import s3_requests, targets
from bench.client_pass import Timed, cli_run, client_run, stage_recordings
from jobs.services.accounts import api_token, ensure_member
from jobs.services.model_lookup import default_model
from jobs.services.registry import local_bundle_dir
from lubdub_client.batches import wait
from lubdub_client.errors import CliError
from lubdub_client.server import Client
from lubdub_client.upload import zip_body

SHARED_DATA = Path(settings.BASE_DIR).parent / "shared" / "data" / "physionet2016"
SAMPLES = Path(settings.BASE_DIR) / "samples" / "physionet"
# infra/processes.sh's pid files (LUBDUB_VAR_DIR moves them, as it does for a second copy).
RUN = Path(os.environ.get("LUBDUB_VAR_DIR") or Path(settings.BASE_DIR) / "var") / "run"
SERVICES = Path(os.environ.get("LUBDUB_SERVICES_DIR") or Path(settings.BASE_DIR) / ".services")
POLL_S = 0.2
PROBE_POLL_S = 0.05  # latency is timed by polling: poll finely
MIB = 1024 * 1024
SEED = 2016


class Command(BaseCommand):
    help = "Throughput, interactive latency and memory of the running platform, with targets."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--recordings", type=int, default=600, help="large archive size")
        parser.add_argument(
            "--small", type=int, default=200, help="small archive size (memory; above one 8 MiB part)"
        )
        parser.add_argument("--probes", type=int, default=12, help="single-file uploads during a bulk run")
        parser.add_argument("--naive", type=int, default=40, help="recordings in the naive loop")
        parser.add_argument("--limit", type=int, default=300, help="recordings in the compute-limit loop")
        parser.add_argument("--processes", type=int, default=2, help="bulk worker processes (make up: 2)")
        parser.add_argument("--label", default="", help="what this run measures, printed with the figures")
        parser.add_argument(
            "--s3-log",
            type=Path,
            default=None,
            help="the S3-API server's request log, to count requests (default: the one of .services, "
            "when it is the server the app uses)",
        )
        default = f"http://127.0.0.1:{os.environ.get('LUBDUB_WEB_PORT', '8000')}"
        parser.add_argument("--url", default=default)

    def handle(self, *args: Any, **options: Any) -> None:
        user = ensure_member("bench", "Benchmark")
        client = Client(options["url"], api_token(user))
        removed = forget_earlier_runs(user)
        paths, source = recordings(options["recordings"])
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        storage_kind = f"S3 at {settings.S3_ENDPOINT_URL or 'AWS'}" if settings.USE_S3 else "filesystem"
        self.stdout.write(f"== {options['label'] or 'platform'}: storage {storage_kind}")
        # Other work on the machine shifts every figure: say how busy it was.
        self.stdout.write(
            f"{len(paths)} recordings from {source}; {os.cpu_count()} cores, load {load}; "
            f"{removed} earlier benchmark batches deleted"
        )
        try:
            # Throughput and memory come from runs without probes, so that both
            # archive sizes see the same requests and the bulk run is not slowed
            # by single-file work; latency is measured during a bulk run of its own.
            small = self._run(client, paths[: options["small"]], probes=0)
            large = self._run(client, paths, probes=0)
            loaded = self._run(client, paths[: options["limit"]], probes=options["probes"])
        except CliError as exc:
            raise CommandError(f"{exc} (is the app running? 'make up')") from exc
        from bench.compute import compute_limit, naive_loop

        bundle = local_bundle_dir(default_model())
        reference = self._reference_and_client(user, options["url"], bundle, paths, options["s3_log"])
        self.stdout.write("compute limit and naive loop ...")
        limit = compute_limit(bundle, paths[: options["limit"]], options["processes"])
        naive = naive_loop(bundle, paths[: options["naive"]])
        self._print(small, large, loaded, limit, naive, options["processes"])
        self.stdout.write("\n".join(reference_lines(**reference)))

    def _reference_and_client(
        self, user: User, url: str, bundle: Path, paths: list[Path], s3_log: Path | None
    ) -> dict[str, Any]:
        """`python -m ml predict` and `lubdub` on the same files, with the requests the client's run made."""
        log = request_log(s3_log)
        token = api_token(user)
        self.stdout.write(f"python -m ml predict and lubdub on the same {len(paths)} files ...")
        with tempfile.TemporaryDirectory(prefix="lubdub-bench-") as scratch:
            folder = Path(scratch) / "recordings"
            staged = stage_recordings(paths, folder)
            try:
                startup = cli_run(bundle, staged[:1], Path(scratch) / "one.csv")
                cli = cli_run(bundle, [folder], Path(scratch) / "cli.csv")
                # The runs above stored these recordings: without their batches the
                # client's archive is stored afresh, as a new archive would be.
                forget_earlier_runs(user)
                if log is not None:
                    log.mark()
                through_client, _ = client_run(
                    url, token, folder, Path(scratch) / "results.csv", name=f"bench lubdub {len(paths)}"
                )
            except subprocess.CalledProcessError as exc:
                raise CommandError(f"{exc}: {(exc.stderr or '').strip()[-2000:]}") from exc
        self.stdout.write(f"  {len(paths)} recordings through lubdub: {through_client.wall:.1f} s")
        counted, source = None, "no request log of the S3-API server the app uses"
        if log is not None:
            counted = s3_requests.count_requests(log.lines_since_mark(), bucket_name())
            source = f"the S3-API server's log, bucket {bucket_name()}"
            if not sum(counted.values()):  # an upload was stored: a log that shows nothing is not this one
                counted, source = None, f"{log.path} shows no request for bucket {bucket_name()}"
        return {
            "cli": cli, "startup": startup, "client": through_client, "requests": counted,
            "storage": "s3" if settings.USE_S3 else "filesystem", "source": source,
        }  # fmt: skip

    def _run(self, client: Client, paths: list[Path], *, probes: int) -> dict[str, Any]:
        pids = process_groups()
        reset_peaks(pids)
        cpu_before = cpu_by_process()
        entries = [(f"{index:05d}-{path.name}", path) for index, path in enumerate(paths)]
        body = zip_body({"name": f"bench {len(paths)}"}, "bench.zip", entries)
        size = body.file_size
        began = datetime.now(UTC)
        batch = client.json(
            "POST", "/api/v1/batches/", data=body, headers={"Content-Type": body.content_type}
        )
        prober = Prober(client, batch["id"], probes)
        prober.start()
        # Poll a few times a second: the CLI's once a second would hold the next run back.
        batch = wait(client, batch["id"], quiet=True, poll=POLL_S)
        while len(reports := client.json("GET", f"/api/v1/batches/{batch['id']}/reports/")) < 3:
            time.sleep(POLL_S)
        # Timed to the last report's own timestamp (same clock): neither the
        # polling interval nor the polling's load on the web process shifts it.
        ready = max(datetime.fromisoformat(report["created_at"].replace("Z", "+00:00")) for report in reports)
        wall = (ready - began).total_seconds()
        cpu = cpu_spent(cpu_before, cpu_by_process())
        prober.join()
        self.stdout.write(f"  {len(paths)} recordings: {wall:.1f} s, status {batch['status']}")
        return {
            "count": len(paths), "wall": wall, "rate": len(paths) / wall, "cpu": cpu, "size": size,
            "latencies": prober.latencies, "overlapping": prober.overlapping, "peaks": read_peaks(pids),
        }  # fmt: skip

    def _print(
        self,
        small: dict[str, Any],
        large: dict[str, Any],
        loaded: dict[str, Any],
        limit: float,
        naive: float,
        procs: int,
    ) -> None:
        rate = large["rate"]
        to_limit, to_naive = rate / limit, rate / naive
        lines = [
            "",
            f"end to end (upload to report ready): {rate:.1f} recordings/s "
            f"({large['count']} in {large['wall']:.1f} s)",
            f"compute limit ({procs} processes, no queue): {limit:.1f} recordings/s",
            f"naive loop (librosa + model.predict per file): {naive:.1f} recordings/s",
            f"  ratio to compute limit: {to_limit:.2f}  (target >= 0.5) {targets.verdict(to_limit >= 0.5)}",
            f"  ratio to naive loop:    {to_naive:.1f}  (target >= 10) {targets.verdict(to_naive >= 10)}",
        ]
        spent = large["cpu"]
        lines.append(
            f"CPU seconds during the {large['count']}-recording run ({large['wall']:.1f} s on "
            f"{os.cpu_count()} cores = {large['wall'] * (os.cpu_count() or 1):.1f} core-seconds; "
            f"the compute limit needs {large['count'] / limit * procs:.1f}):"
        )
        lines += [f"  {name:<20} {seconds:8.2f}" for name, seconds in spent.items()]
        latencies = loaded["latencies"]
        if latencies:
            p50 = statistics.median(latencies)
            p95 = sorted(latencies)[max(0, round(0.95 * len(latencies)) - 1)]
            lines.append(
                f"single-file latency ({len(latencies)} files, {loaded['overlapping']} while a bulk "
                f"batch of {loaded['count']} ran): p50 {p50:.2f} s, p95 {p95:.2f} s "
                f"(target p50 <= 1.5 s) {targets.verdict(p50 <= 1.5)}"
            )
        lines.append("peak resident memory (MiB), small vs large archive:")
        for group in sorted(large["peaks"]):
            before, after = small["peaks"].get(group, 0), large["peaks"][group]
            lines.append(f"  {group:<20} {before / MIB:8.0f} {after / MIB:8.0f}")
        lines.append(f"  (archives of {small['size'] / MIB:.1f} MiB and {large['size'] / MIB:.1f} MiB)")
        self.stdout.write("\n".join(lines))


def reference_lines(
    *, cli: Timed, startup: Timed, client: Timed, requests: dict[str, int] | None, storage: str, source: str
) -> list[str]:
    """The client's run against the CLI's on the same files, and its object-store requests."""
    lines = [
        f"python -m ml predict (the reference: one process, the workers' bundle, the same {cli.count} "
        f"files): {cli.rate:.1f} recordings/s ({cli.count} in {cli.wall:.2f} s; start-up and one file: "
        f"{startup.wall:.2f} s)",
        f"end to end through lubdub (submit --wait, then the results CSV downloaded): {client.rate:.1f} "
        f"recordings/s ({client.count} in {client.wall:.1f} s)",
    ]
    # The target is judged against what the CLI does once loaded: its start-up (about
    # a second) is a large share of a short run, and would flatter the platform.
    past_startup = cli.wall - startup.wall
    if past_startup > 0 and cli.count > startup.count:
        loaded = (cli.count - startup.count) / past_startup
        lines.append(f"  the CLI past its start-up: {loaded:.1f} recordings/s")
        lines.append(f"  {targets.cli_ratio_line(client.rate, loaded, storage)}")
        lines.append(f"  ratio to the CLI's whole run, start-up included: {client.rate / cli.rate:.2f}")
    else:
        lines.append(f"  {targets.cli_ratio_line(client.rate, cli.rate, storage)}")
    for run, name in ((cli, "python -m ml predict"), (client, "lubdub results")):
        if run.rows != run.count:
            lines.append(f"  warning: {name} gave {run.rows} results without an error for {run.count} files")
    if storage == "filesystem":
        lines.append("object-store requests: none (filesystem storage)")
    elif requests is None:
        lines.append(f"object-store requests: not counted ({source}; --s3-log names one)")
    else:
        kinds = ", ".join(f"{kind} {requests[kind]}" for kind in s3_requests.KINDS)
        lines.append(f"object-store requests during the lubdub run ({source}): {kinds}")
        lines.append(f"  {targets.requests_line(requests[s3_requests.AUDIO], client.count)}")
    return lines


def request_log(path: Path | None) -> s3_requests.RequestLog | None:
    """The log that counts the app's S3 requests: the one named, or that of .services' server if the app's."""
    if not settings.USE_S3:
        return None
    if path is None:
        path = s3_requests.server_log(SERVICES, urlsplit(settings.S3_ENDPOINT_URL).port)
        return None if path is None else s3_requests.RequestLog(path)
    if not path.is_file():
        raise CommandError(f"no request log at {path}")
    return s3_requests.RequestLog(path)


def bucket_name() -> str:
    return str(settings.STORAGES["default"]["OPTIONS"]["bucket_name"])  # type: ignore[index]


def forget_earlier_runs(user: User) -> int:
    """Delete earlier benchmark batches and their audio, so every run starts alike."""
    from jobs.models import Batch
    from jobs.services.lifecycle import delete_batch

    earlier = list(Batch.objects.filter(created_by=user))
    for batch in earlier:
        delete_batch(batch, user=user)
    return len(earlier)


# Where CPU time goes during a run, by process kind (matched on the command line).
PROCESS_KINDS = (
    ("moto_server", "S3-API server"),
    ("postgres", "PostgreSQL"),
    ("redis-server", "Redis"),
    ("gunicorn", "web"),
    ("worker-bulk", "bulk worker"),
    ("worker-interactive", "interactive worker"),
    ("manage.py bench", "this benchmark"),
)


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """User+system CPU seconds of every process of a known kind, by pid."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        kind = next((name for key, name in PROCESS_KINDS if key in command), None)
        if kind is not None:
            fields = stat[stat.rfind(")") + 2 :].split()
            found[int(entry.name)] = (kind, (int(fields[11]) + int(fields[12])) / tick)
    return found


def cpu_spent(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per kind between two readings (processes that ended meanwhile are not seen)."""
    spent: dict[str, float] = {name: 0.0 for _, name in PROCESS_KINDS}
    for pid, (kind, seconds) in after.items():
        spent[kind] += seconds - before.get(pid, (kind, 0.0))[1]
    return {kind: seconds for kind, seconds in spent.items() if seconds >= 0.005}


def recordings(count: int) -> tuple[list[Path], str]:
    """Real recordings: the shared PhysioNet set when present, else the sample repeated."""
    labels = SHARED_DATA / "labels.csv"
    if labels.exists():
        with labels.open() as handle:
            found = [SHARED_DATA / row["path"] for row in csv.DictReader(handle)]
        found = [path for path in found if path.exists()]
        if found:
            # labels.csv lists one site after another, and sites differ in
            # recording length: shuffle (seeded) so that the shorter prefixes the
            # reference loops use are drawn like the whole archive.
            random.Random(SEED).shuffle(found)
            return [found[i % len(found)] for i in range(count)], str(SHARED_DATA)
    samples = sorted(SAMPLES.glob("*.wav"))
    return [samples[i % len(samples)] for i in range(count)], str(SAMPLES)


class Prober(threading.Thread):
    """Single-file uploads, one after another, timed from upload to result."""

    def __init__(self, client: Client, bulk_id: str, count: int) -> None:
        super().__init__(daemon=True)
        self.client, self.bulk_id, self.count = client, bulk_id, count
        self.latencies: list[float] = []
        self.overlapping = 0
        self.samples = sorted(SAMPLES.glob("*.wav"))

    def run(self) -> None:
        session = requests.Session()
        session.headers.update(self.client.session.headers)
        for index in range(self.count):
            time.sleep(0.3)
            path = self.samples[index % len(self.samples)]
            began = time.perf_counter()
            with path.open("rb") as handle:
                files = {"file": (path.name, handle)}
                created = session.post(f"{self.client.url}/api/v1/batches/", files=files, timeout=60).json()
            detail = f"{self.client.url}/api/v1/batches/{created['id']}/"
            while not session.get(detail, timeout=60).json()["progress"]["finished"]:
                time.sleep(PROBE_POLL_S)
            self.latencies.append(time.perf_counter() - began)
            bulk = session.get(f"{self.client.url}/api/v1/batches/{self.bulk_id}/", timeout=60).json()
            self.overlapping += not bulk["progress"]["finished"]


def process_groups() -> dict[str, list[int]]:
    """The pids of web and worker processes started by infra/processes.sh (parents and children)."""
    groups = {}
    for name in ("web", "worker-bulk", "worker-interactive"):
        pidfile = RUN / f"{name}.pid"
        if pidfile.exists():
            parent = int(pidfile.read_text().split()[0])
            groups[name] = [parent, *_children(parent)]
    return groups


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def reset_peaks(groups: dict[str, list[int]]) -> None:
    for pids in groups.values():
        for pid in pids:
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM
            except OSError:
                continue


def read_peaks(groups: dict[str, list[int]]) -> dict[str, int]:
    """Largest peak resident set of one process in each group, in bytes."""
    peaks = {}
    for name, pids in groups.items():
        values = [0]
        for pid in pids:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    values.append(int(line.split()[1]) * 1024)
        peaks[name] = max(values)
    return peaks
