"""The platform through `lubdub` and its reference, `python -m ml predict`, on the same files.

Both are run as a user runs them, in processes of their own, on one folder of
the benchmark's recordings (copies, named as in the benchmark's archive):

- the reference: ``python -m ml predict FOLDER --model BUNDLE --out CSV`` with the
  bundle the workers use, timed from start to exit (start-up and model loading
  included; timed alone on one file, too);
- the client: ``lubdub submit FOLDER --wait`` (zipped while streaming, the
  upload, ingest, analysis, the poll once a second) and then ``lubdub results
  BATCH --format csv -o CSV`` (waits for the CSV report and downloads it),
  timed from the upload's start to the results on disk.

Each run's CSV is read back: a figure is only printed for one that classified
every file.
"""

import csv
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ml.threads import THREAD_VARIABLES


@dataclass(frozen=True)
class Timed:
    """A run over ``count`` recordings that took ``wall`` seconds and wrote ``rows`` result rows."""

    count: int
    wall: float
    rows: int

    @property
    def rate(self) -> float:
        return self.count / self.wall


def stage_recordings(paths: list[Path], folder: Path) -> list[Path]:
    """Copy the recordings into ``folder`` under the names the benchmark's archive gives them.

    Copies, not links: ``lubdub submit`` leaves symbolic links in a folder out.
    """
    folder.mkdir(parents=True, exist_ok=True)
    staged = []
    for index, path in enumerate(paths):
        target = folder / f"{index:05d}-{path.name}"
        shutil.copyfile(path, target)
        staged.append(target)
    return staged


def result_rows(path: Path) -> int:
    """Rows of a results CSV (its header not counted) that carry no error."""
    with path.open(newline="", encoding="utf-8") as handle:
        return sum(not row.get("error") for row in csv.DictReader(handle))


def cli_run(bundle: Path, inputs: list[Path], out: Path) -> Timed:
    """``python -m ml predict`` over ``inputs`` (files or a folder) with one thread per pool, as a worker."""
    env = {**os.environ, **dict.fromkeys(THREAD_VARIABLES, "1"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    predict = [sys.executable, "-m", "ml", "predict", "--model", str(bundle), "--out", str(out)]
    began = time.perf_counter()
    subprocess.run([*predict, *map(str, inputs)], env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - began
    files = sum(len(list(p.iterdir())) if p.is_dir() else 1 for p in inputs)
    return Timed(files, wall, result_rows(out))


def client_run(url: str, token: str, folder: Path, out: Path, *, name: str) -> tuple[Timed, str]:
    """``lubdub submit FOLDER --wait`` then ``lubdub results``: the run and the batch id."""
    env = {**os.environ, "LUBDUB_URL": url, "LUBDUB_TOKEN": token}
    lubdub = [sys.executable, "-m", "lubdub_client", "--quiet"]
    count = len(list(folder.iterdir()))
    began = time.perf_counter()
    submitted = subprocess.run(
        [*lubdub, "submit", str(folder), "--name", name, "--wait"],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    batch_id = submitted.stdout.split()[0]
    subprocess.run(
        [*lubdub, "results", batch_id, "--format", "csv", "-o", str(out)],
        env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wall = time.perf_counter() - began
    return Timed(count, wall, result_rows(out)), batch_id
