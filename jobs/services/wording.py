"""Plain words for the codes behind a result, for the reports people read (HTML, PDF, the report page).

The CSV and JSON reports and the API keep the codes: programs match them. A
person reads "not a recognised audio file" instead of ``not_audio``, "rejected at
upload" instead of ``rejected``, and a reason the decision rule wrote for a
statistician ("unlike the training recordings (distance 5.2, limit 3.1)") as
what it means for the result.
"""

import re

from ml import errors
from ml.calibration import UNLIKE_TRAINING

# Why a file got no result (Recording.error_code, Analysis.error_code).
ERROR_TEXT = {
    errors.NOT_AUDIO: "not a recognised audio file",
    errors.UNDECODABLE: "the audio could not be decoded",
    errors.EMPTY: "the file is empty",
    errors.TRUNCATED: "the file is cut short",
    errors.TOO_SHORT: "too short to analyse",
    errors.SILENT: "silent: nothing was recorded",
    errors.UNSUPPORTED_RATE: "a sample rate that cannot be analysed",
    "nested_archive": "an archive inside the archive (upload it separately)",
    "absolute_path": "an absolute path inside the archive",
    "unsafe_path": "a path that leads out of the archive",
    "symlink": "a link to another file, not a file",
    "hidden_file": "a hidden or system file, not a recording",
    "duplicate_name": "a second file of the same name in the archive",
    "encrypted": "protected by a password",
    "too_large": "larger than a recording may be",
    "zip_bomb": "compressed implausibly far for audio",
    "corrupt": "damaged inside the archive",
    "unsupported_compression": "compressed in a way that cannot be read",
    "malformed_labels": "labels.csv could not be read",
    "missing_audio": "its stored audio is gone: upload it again",
    "worker_lost": "the analysis stopped several times: upload it again",
    "analysis_error": "the analysis failed (a fault of the platform, not of the recording)",
}
# A file's state in the batch (results.FILE_STATUSES).
STATUS_TEXT = {
    "done": "analysed",
    "failed": "not analysable",
    "rejected": "rejected at upload",
    "pending": "not analysed",
    "running": "being analysed",
    "skipped": "skipped",
    "cancelled": "cancelled",
}
NEAR_THRESHOLD = re.compile(
    r"^p\((?P<positive>[^)]+)\) (?P<probability>[\d.]+) is within (?P<margin>[\d.]+) "
    r"of the threshold (?P<threshold>[\d.]+)$"
)
RE_RECORD_PREFIX = "re-record: "


def error_text(code: str) -> str:
    """What an error code means, in words; an unknown code with its underscores as spaces."""
    return ERROR_TEXT.get(code) or code.replace("_", " ")


def status_text(status: str) -> str:
    return STATUS_TEXT.get(status, status)


def reason_text(reason: str) -> str:
    """One reason a decision gave (ml.calibration.decide_one's), said for a clinician."""
    if reason.startswith(UNLIKE_TRAINING):
        return "unlike the recordings the model was trained on, so the result may not hold"
    near = NEAR_THRESHOLD.match(reason)
    if near:
        return (
            f"too close to the threshold to call: p({near['positive']}) {near['probability']} is within "
            f"{near['margin']} of {near['threshold']}"
        )
    if reason.startswith(RE_RECORD_PREFIX):
        return "unusable: " + reason.removeprefix(RE_RECORD_PREFIX)
    return reason


def reasons_text(reasons: list[str]) -> str:
    return "; ".join(reason_text(reason) for reason in reasons)
