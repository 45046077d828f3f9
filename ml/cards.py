"""Model cards written into every bundle (``CARD.md``)."""

from __future__ import annotations

from typing import Any

SCREENING_USE = (
    "Screening aid: flags heart-sound recordings for referral to an expert. "
    "It is not a diagnosis. Read the quality verdict beside the label."
)
RESEARCH_USE = (
    "RESEARCH USE ONLY. Trained on the PASCAL Classifying Heart Sounds Challenge 2011 "
    "recordings, whose licence is unclear; the weights are shared for research and "
    "evaluation, the recordings are not redistributed. Not for clinical use."
)
PASCAL_NOTE = (
    "Part of its training data, the PASCAL 2011 recordings, comes with an unclear licence: "
    "those recordings are not redistributed, and the weights are for use within this platform."
)
PHYSIONET_CITATION = (
    "Liu C et al. An open access database for the evaluation of heart sound algorithms. "
    "Physiol Meas 2016;37(12):2181-2213 (PhysioNet/CinC Challenge 2016, ODC-By 1.0)."
)
CIRCOR_CITATION = (
    "Oliveira J et al. The CirCor DigiScope Dataset: From Murmur Detection to Murmur Classification. "
    "IEEE J Biomed Health Inform 2022;26(6):2524-2535 (PhysioNet Challenge 2022, ODC-By 1.0)."
)
NOT_FOR = (
    "- Diagnosis, or ruling disease out: a `normal` call does not exclude heart disease "
    "(murmur-free conditions such as coronary artery disease are largely invisible to it).\n"
    "- Recordings of anything but the heart through a stethoscope, or of foetal heart sounds.\n"
    "- Acting on results from a new device or site before checking them on a labelled local "
    "sample (see the site calibration workflow and the batch-shift warning).\n"
    "- Recordings the quality check calls unusable, or decisions marked `uncertain`: those "
    "need a repeat recording or an expert's listening."
)
PASCAL_CITATION = (
    "Bentley P, Nordehn G, Coimbra M, Mannor S. The PASCAL Classifying Heart Sounds "
    "Challenge 2011 (CHSC2011) Results. http://www.peterjbentley.com/heartchallenge/"
)


def model_card(
    *,
    name: str,
    version: str,
    intended_use: str,
    data_sources: list[str],
    citations: list[str],
    settings: dict[str, Any],
    metrics: dict[str, Any],
    notes: str = "",
    sections: list[tuple[str, str]] | None = None,
) -> str:
    """Markdown model card: use, data, training settings, measured results, caveats.

    ``sections`` are extra ``(title, markdown)`` parts placed before the caveats.
    """
    lines = [f"# {name} {version}", "", "## Intended use", "", intended_use, "", "## Training data", ""]
    lines += [f"- {source}" for source in data_sources]
    lines += ["", "## Training settings", ""]
    lines += [f"- {key}: {value}" for key, value in settings.items()]
    lines += ["", "## Measured results", "", "Recording-level, at the bundle's decision threshold.", ""]
    lines += _metric_lines(metrics)
    lines += _confusion_lines(metrics)
    for title, text in sections or []:
        lines += ["", f"## {title}", "", text]
    lines += ["", "## Caveats", "", notes or "-", "", "## Citations", ""]
    lines += [f"- {citation}" for citation in citations]
    return "\n".join(lines) + "\n"


def _metric_lines(metrics: dict[str, Any]) -> list[str]:
    keys = ("count", "macc", "sensitivity", "specificity", "accuracy", "roc_auc", "macro_recall")
    lines = ["| split | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for split, values in _flatten(metrics):
        cells = [_cell(values.get(key)) for key in keys]
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return lines


def _confusion_lines(metrics: dict[str, Any]) -> list[str]:
    """Per-class recall and confusion matrix of the held-out recordings, when there are any."""
    held = metrics.get("holdout", {}).get("overall")
    if not held:
        return []
    classes = held["classes"]
    recalls = ", ".join(f"{name} {_cell(held['per_class_recall'][name])}" for name in classes)
    lines = [
        "",
        f"Held-out per-class recall: {recalls}.",
        "",
        "Held-out confusion matrix (rows true, columns predicted):",
        "",
    ]
    lines += ["| true \\ predicted | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
    for name, row in zip(classes, held["confusion_matrix"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(count) for count in row) + " |")
    return lines


def _flatten(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for split, values in metrics.items():
        if isinstance(values, dict) and "groups" in values:
            if "overall" in values:
                rows.append((f"{split} (all)", values["overall"]))
            rows += [(f"{split}: {group}", group_values) for group, group_values in values["groups"].items()]
        elif isinstance(values, dict) and "count" in values:
            rows.append((split, values))
    return rows


def _cell(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("-" if value is None else str(value))
