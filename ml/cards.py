"""Model cards written into every bundle (``CARD.md``): all of their text.

``model_card`` lays the card out; the functions below it write its parts from
plain values (source names and counts, metrics, the crossval summary, the
calibration), so that ``ml.train_command`` only gathers those values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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
NOTES = (
    "Trained and validated on public challenge data; sites and devices not "
    "represented there may score lower. Recordings flagged poor or unusable "
    "by the quality check deserve a repeat recording."
)
# Columns of the per-source tables: (key in a crossval summary's folds, heading).
SOURCE_COLUMNS = (("macc", "MAcc"), ("sensitivity", "Se"), ("specificity", "Sp"), ("roc_auc", "ROC AUC"))


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


def intended_use(groups: Sequence[str], *, research_use: bool) -> str:
    """Screening aid, or research use only: when asked, or when the training data are
    PASCAL recordings with at most one other source (``groups``: the source names)."""
    pascal = _has_pascal(groups)
    if research_use or (pascal and len(groups) <= 2):
        return RESEARCH_USE
    return SCREENING_USE + (" " + PASCAL_NOTE if pascal else "")


def citations(groups: Sequence[str]) -> list[str]:
    """The datasets to cite for training sources named ``groups``."""
    pascal = _has_pascal(groups)
    found = [PHYSIONET_CITATION] if not pascal or len(groups) > 2 else []
    found += [CIRCOR_CITATION] if any("circor" in str(group) for group in groups) else []
    found += [PASCAL_CITATION] if pascal else []
    return found


def data_sources(
    recordings: Mapping[str, int],
    *,
    holdout: Sequence[str],
    validation_share: float,
    calibrated: bool,
    test_share: float = 0.0,
    external: Mapping[str, int] | None = None,
) -> list[str]:
    """The training-data lines: recordings per source, then what was kept out and why.

    ``recordings`` and ``external`` count recordings by source and by external
    collection; shares are fractions of each source and class.
    """
    lines = [
        f"{group}: {count} recordings" + (" (held out, not trained on)" if group in holdout else "")
        for group, count in recordings.items()
    ]
    lines.append(
        f"{validation_share:.0%} of each source group and class kept for validation "
        + ("(early stopping; the threshold comes from the calibration)" if calibrated else
           "(early stopping, decision threshold)")
    )  # fmt: skip
    if test_share > 0:
        lines.append(f"{test_share:.0%} of each group and class kept out as a test set")
    lines += [
        f"external check only (never trained on): {label}, {count} recordings"
        for label, count in (external or {}).items()
    ]
    return lines


def caveats(metrics: dict[str, Any]) -> str:
    """Caveats, with the range of scores on sites the model (or its recipe) never saw."""
    unseen = [
        values
        for key, report in metrics.items()
        if key == "leave_one_folder_out" or key.startswith("external_")
        for values in report["groups"].values()
    ]
    if not unseen:
        return NOTES
    maccs = [values["macc"] for values in unseen if isinstance(values.get("macc"), float)]
    aucs = [values["roc_auc"] for values in unseen if isinstance(values.get("roc_auc"), float)]
    spread = f"MAcc {min(maccs):.2f}-{max(maccs):.2f}" if maccs else "an unknown MAcc"
    if aucs:
        spread += f" with ROC AUC {min(aucs):.2f}-{max(aucs):.2f}"
    return (
        "Validation recordings come from the same sites as the training recordings, so the "
        "validation row is what to expect on those sites only. The leave_one_folder_out rows "
        "are this recipe retrained with one folder held out, and the external rows are this "
        f"bundle on collections it never saw: on unseen sites and devices it scores {spread}, "
        "and the best decision threshold differs by site. Treat results on recordings from new "
        "devices or sites as unvalidated until checked on labelled local data. " + NOTES
    )


def segmentation_section(segmenter: str, scores: dict[str, Any]) -> tuple[str, str]:
    """How well ``segmenter`` finds S1 and S2 (its ``scores.json``)."""
    return (
        "Heart-cycle segmentation",
        f"{segmenter}, on {scores['recordings']} recordings of "
        f"{scores['held_out_patients']} CirCor patients it never saw (onsets within 60 ms): "
        f"S1 F1 {scores['s1']['f1']:.3f} (precision {scores['s1']['precision']:.3f}, recall "
        f"{scores['s1']['recall']:.3f}), S2 F1 {scores['s2']['f1']:.3f} (precision "
        f"{scores['s2']['precision']:.3f}, recall {scores['s2']['recall']:.3f}); frame "
        f"accuracy {scores['frame_accuracy']:.3f}.",
    )


def source_table(summary: dict[str, Any]) -> list[str]:
    """Markdown rows of a crossval summary: each held-out source's mean (range) over seeds."""
    rows = [
        "| held-out source | " + " | ".join(heading for _, heading in SOURCE_COLUMNS) + " |",
        "|---" * (len(SOURCE_COLUMNS) + 1) + "|",
    ]
    for fold, values in summary["folds"].items():
        cells = [mean_range(values.get(key)) for key, _ in SOURCE_COLUMNS]
        rows.append(f"| {fold} | " + " | ".join(cells) + " |")
    return rows


def leave_one_source_out_section(summary: dict[str, Any], *, seeds: Sequence[int]) -> tuple[str, str]:
    """The recipe retrained without each source, decided as a new site would be."""
    rows = source_table(summary)
    rows.append(
        f"\nMean over sources: MAcc {mean_range(summary['mean_macc'])}, ROC AUC "
        f"{mean_range(summary['mean_roc_auc'])}; lowest Se or Sp on any source "
        f"{mean_range(summary['lowest_sensitivity_or_specificity'])} "
        f"(mean and range over seeds {', '.join(map(str, seeds))}; each row is "
        "this recipe retrained without that source, decided by the calibration and threshold "
        "fitted on the other sources' held-out scores)."
    )
    return ("Leave one source out", "\n".join(rows))


def calibration_sections(calibration: dict[str, Any]) -> list[tuple[str, str]]:
    """The calibration and decision rule (``ml.calibration``'s values), then what not to use it for."""
    nested = calibration.get("metrics", {}).get("nested_leave_one_source_out", {})
    rows = [
        f"Platt scaling of the score's log-odds (slope {calibration['slope']:.3f}, intercept "
        f"{calibration['intercept']:.3f}) fitted on the leave-one-source-out scores, every source "
        f"and class weighted alike; threshold {calibration['threshold']:.2f} on the calibrated "
        f"probability; `uncertain` within {calibration['margin']:.2f} of it, for unusable or poor "
        "recordings and for recordings unlike every training source.",
    ]
    # Bundles calibrated before the band's figures were kept have only the first three.
    banded = bool(nested) and all("uncertain_share" in v for v in nested.values())
    if nested:
        rows += [
            "",
            "Each source scored with the calibration and threshold fitted on the other sources only "
            "(what a new site gets)"
            + (
                "; the last two columns: the share the band around the threshold calls `uncertain`, "
                "and the MAcc of the recordings it decides:"
                if banded
                else ":"
            ),
            "",
            "| source | Se | Sp | MAcc |" + (" uncertain | MAcc decided |" if banded else ""),
            "|---|---|---|---|" + ("---|---|" if banded else ""),
        ]
        rows += [
            f"| {name} | {v['sensitivity']:.3f} | {v['specificity']:.3f} | {v['macc']:.3f} |"
            + (f" {v['uncertain_share']:.2f} | {_number(v['decided_macc'])} |" if banded else "")
            for name, v in nested.items()
        ]
    return [("Calibration and decisions", "\n".join(rows)), ("Must not be used for", NOT_FOR)]


def _number(value: float) -> str:
    """Three decimals, ``-`` for NaN (a class with no decided recording)."""
    return "-" if math.isnan(value) else f"{value:.3f}"


def mean_range(values: dict[str, float] | None) -> str:
    """``mean (min-max)`` of a spread over seeds, ``-`` when there is none."""
    if not values:
        return "-"
    return f"{values['mean']:.3f} ({values['min']:.3f}-{values['max']:.3f})"


def _has_pascal(groups: Sequence[str]) -> bool:
    return any(str(group).startswith("set-") for group in groups)
