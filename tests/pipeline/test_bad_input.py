"""An archive with good recordings, labels and every kind of bad input, end to end."""

import io
import json
import stat
import zipfile
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from jobs import storage
from jobs.models import Analysis, Batch, Prediction, Recording, Report
from tests.conftest import SAMPLES
from tests.pipeline.conftest import LABELS, upload, wait_for_batch
from tests.polling import poll_until

GOOD = ["a0033.wav", "a0035.wav", "a0071.wav", "a0194.wav", "c0002.wav", "d0001.wav"]


def _wav(samples: np.ndarray, rate: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, subtype=subtype, format=fmt)
    return buffer.getvalue()


def _source() -> tuple[np.ndarray, int]:
    samples, rate = sf.read(SAMPLES / "a0071.wav", dtype="float32")
    return samples, rate


def _variants() -> dict[str, bytes]:
    """Recordings that are odd but usable: each must get a prediction."""
    samples, rate = _source()
    clipped = np.clip(samples * 50 / max(float(np.abs(samples).max()), 1e-6), -1, 1)
    return {
        "formats/stereo.wav": _wav(np.stack([samples, samples * 0.5], axis=1), rate),
        "formats/pcm8.wav": _wav(samples, rate, "PCM_U8"),
        "formats/pcm24.wav": _wav(samples, rate, "PCM_24"),
        "formats/pcm32.wav": _wav(samples, rate, "PCM_32"),
        "formats/float.wav": _wav(samples, rate, "FLOAT"),
        "formats/recording.flac": _wav(samples, rate, "PCM_16", "FLAC"),
        "formats/odd_rate_11025.wav": _wav(samples, 11025),
        "formats/clipped.wav": _wav(clipped, rate),
    }


def _unknown_codec() -> bytes:
    """A well-formed RIFF/WAVE file whose format tag no decoder knows."""
    fmt = b"fmt " + (16).to_bytes(4, "little") + bytes.fromhex("9999 0100 401f0000 803e0000 0200 1000")
    data = b"data" + (4000).to_bytes(4, "little") + bytes(4000)
    body = b"WAVE" + fmt + data
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def _failing() -> dict[str, tuple[bytes, str]]:
    """Files that pass the header check at ingest and fail decoding, with the expected code."""
    samples, rate = _source()
    whole = _wav(samples, rate)
    return {
        "bad/undecodable.wav": (_unknown_codec(), "undecodable"),
        "bad/truncated.wav": (whole[: len(whole) // 3], "truncated"),
        "bad/too_short.wav": (_wav(samples[: rate // 2], rate), "too_short"),
        "bad/silent.wav": (_wav(np.zeros(rate * 5, dtype=np.float32), rate), "silent"),
        "bad/rate_100hz.wav": (_wav(samples[:1000], 100), "unsupported_rate"),
    }


def _rejected_members(archive: zipfile.ZipFile) -> dict[str, str]:
    """Members refused at ingest, written into the archive; path -> expected code."""
    archive.writestr("notes/readme.txt", "not a recording")
    archive.writestr("bad/empty.wav", b"")
    archive.writestr("../escape.wav", (SAMPLES / "a0033.wav").read_bytes())
    archive.writestr("/etc/absolute.wav", (SAMPLES / "a0033.wav").read_bytes())
    link = zipfile.ZipInfo("link.wav")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive.writestr(link, "a0033.wav")
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as nested:
        nested.write(SAMPLES / "a0035.wav", "a0035.wav")
    archive.writestr("nested/inner.zip", inner.getvalue())
    archive.writestr("__MACOSX/._a0033.wav", b"\x00\x05\x16\x07")
    archive.writestr(".hidden.wav", (SAMPLES / "a0033.wav").read_bytes())
    archive.writestr(
        zipfile.ZipInfo("bomb.wav"), b"RIFF" + bytes(3 * 1024 * 1024), compress_type=zipfile.ZIP_DEFLATED
    )
    archive.writestr("secret.wav", (SAMPLES / "a0071.wav").read_bytes())
    archive.getinfo("secret.wav").flag_bits |= 0x1  # marked encrypted in the central directory
    with pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr("a0033.wav", (SAMPLES / "a0194.wav").read_bytes())
    return {
        "notes/readme.txt": "not_audio",
        "bad/empty.wav": "empty",
        "../escape.wav": "unsafe_path",
        "/etc/absolute.wav": "absolute_path",
        "link.wav": "symlink",
        "nested/inner.zip": "nested_archive",
        "__MACOSX/._a0033.wav": "hidden_file",
        ".hidden.wav": "hidden_file",
        "bomb.wav": "zip_bomb",
        "secret.wav": "encrypted",
    }


def build_archive() -> tuple[bytes, dict[str, str], dict[str, str]]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in GOOD:
            archive.write(SAMPLES / name, name)
        archive.writestr("labels.csv", "path,label\n" + "".join(f"{n},{LABELS[n]}\n" for n in GOOD))
        for path, data in _variants().items():
            archive.writestr(path, data)
        failing = {}
        for path, (data, code) in _failing().items():
            archive.writestr(path, data)
            failing[path] = code
        rejected = _rejected_members(archive)
    return buffer.getvalue(), failing, rejected


@pytest.mark.slow
def test_it_analyses_good_files_and_gives_each_bad_one_its_reason(
    shared_worker: Any, default_model: Any, api: Any
) -> None:
    data, failing, rejected = build_archive()

    created = upload(api, data, "mixed.zip", name="every bad input")
    batch = wait_for_batch(created["id"])

    good = GOOD + list(_variants())
    recordings = {r.path: r for r in Recording.objects.filter(batch=batch)}
    predicted = set(Prediction.objects.filter(batch=batch).values_list("recording__path", flat=True))
    assert predicted == set(good)
    assert recordings["formats/stereo.wav"].channels == 2
    assert recordings["formats/odd_rate_11025.wav"].sample_rate == 11025
    failed = dict(
        Analysis.objects.filter(batch=batch, status=Analysis.Status.FAILED).values_list(
            "recording__path", "error_code"
        )
    )
    assert failed == failing
    refused = {r.path: r.error_code for r in recordings.values() if r.status == Recording.Status.REJECTED}
    assert refused == {**rejected, "a0033.wav (copy 2)": "duplicate_name"}
    assert all(r.error_message for r in recordings.values() if r.status == Recording.Status.REJECTED)
    assert batch.status == Batch.Status.COMPLETED_WITH_ERRORS
    assert (batch.done_count, batch.failed_count, batch.pending_count) == (len(good), len(failing), 0)
    assert batch.rejected_count == len(rejected) + 1
    assert batch.total_count == len(recordings)
    _assert_reports_match(batch)


def _assert_reports_match(batch: Batch) -> None:
    assert wait_for_reports(batch) == {"csv", "json", "html", "pdf"}
    summary = json.loads(storage.read_bytes(Report.objects.get(batch=batch, format="json").storage_key))
    labelled = Prediction.objects.filter(batch=batch, recording__label__in=["normal", "abnormal"])
    pairs = [(p.recording.label, p.label) for p in labelled.select_related("recording")]
    tp = sum(1 for truth, guess in pairs if truth == guess == "abnormal")
    tn = sum(1 for truth, guess in pairs if truth == guess == "normal")
    positives = sum(1 for truth, _ in pairs if truth == "abnormal")
    negatives = len(pairs) - positives
    metrics = summary["metrics"]
    assert metrics["labelled"] == len(GOOD) == len(pairs)
    assert metrics["sensitivity"] == pytest.approx(tp / positives)
    assert metrics["specificity"] == pytest.approx(tn / negatives)
    assert metrics["macc"] == pytest.approx((tp / positives + tn / negatives) / 2)
    matrix = metrics["confusion_matrix"]["rows_truth_columns_predicted"]
    assert sum(map(sum, matrix)) == len(pairs)
    csv_text = storage.read_bytes(Report.objects.get(batch=batch, format="csv").storage_key).decode()
    header, *rows = csv_text.strip().splitlines()
    assert header == (
        "path,status,label,decision,confidence,p_normal,p_abnormal,quality,heart_rate_bpm,duration_s,"
        "model_version,error,site,site_calibration,site_probability,threshold,decision_reasons,heart_rate_flag,"
        "reviewed_label,review_action,reviewed_by,reviewed_at,review_note,patient_id,location"
    )
    assert len(rows) == batch.total_count
    page = storage.read_bytes(Report.objects.get(batch=batch, format="html").storage_key).decode()
    assert "<svg" in page and "MAcc" in page and "truth: abnormal" in page


def wait_for_reports(batch: Batch, timeout: float = 60) -> set[str]:
    poll_until(lambda: Report.objects.filter(batch=batch).count() == 4, timeout)
    return set(Report.objects.filter(batch=batch).values_list("format", flat=True))
