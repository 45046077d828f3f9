"""The benchmark's targets and the lines that report a figure against one.

The platform end to end, through `lubdub`, against `python -m ml predict` on
the same files in the same run: at least half the CLI's rate on S3 storage, 0.7
of it on filesystem storage, and at most 0.1 object-store requests per
recording for ingest and analysis.
"""

CLI_RATIO_TARGETS = {"s3": 0.5, "filesystem": 0.7}
REQUESTS_PER_RECORDING_TARGET = 0.1


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def at_least(label: str, value: float, target: float, *, digits: int = 2) -> str:
    """``label: value  (target >= target) ok|MISSED``."""
    return f"{label}: {value:.{digits}f}  (target >= {target:g}) {verdict(value >= target)}"


def at_most(label: str, value: float, target: float, *, digits: int = 3) -> str:
    """``label: value  (target <= target) ok|MISSED``."""
    return f"{label}: {value:.{digits}f}  (target <= {target:g}) {verdict(value <= target)}"


def cli_ratio_line(rate: float, cli_rate: float, storage: str) -> str:
    """The end-to-end rate as a share of the CLI's, against the target for ``storage``."""
    target = CLI_RATIO_TARGETS[storage]
    return at_least(f"ratio to the CLI ({storage} storage)", rate / cli_rate, target)


def requests_line(requests: int, recordings: int) -> str:
    """Ingest and analysis requests per recording, against their target."""
    per_recording = requests / recordings
    return at_most("ingest + analysis requests per recording", per_recording, REQUESTS_PER_RECORDING_TARGET)
