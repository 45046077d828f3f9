"""``python -m ml combine``: one bundle from models that read the same recording differently.

The beat measures and the log-mel frames rank different held-out sources well
(docs/models.md), so a composite bundle serves both: the primary bundle (its
features give the timeline, the segments and the out-of-distribution check) with
member bundles in sub-folders (``Manifest.members``). A recording's score is the
weighted mean of the models' log-odds; the calibration and threshold are fitted
on that mean over the leave-one-source-out scores of the very recipes combined,
as ``python -m ml train --crossval`` does for one model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ml import calibration, cards
from ml.bundle import CARD_FILE, MANIFEST_FILE, MEMBER_CHARACTERS, Manifest, read_manifest, verify_bundle
from ml.calibration import combine_log_odds
from ml.errors import BundleError

MEMBER_FOLDER = re.compile(f"[^{MEMBER_CHARACTERS}]+")


def merge_seeds(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Crossval results of one recipe run with different seeds, as one result.

    Raises ValueError when they scored other recordings or recipes.
    """
    merged: dict[str, Any] = json.loads(json.dumps(results[0]))
    for other in results[1:]:
        _check_same_recordings(merged, other)
        if other.get("settings", {}) | {"seed": 0} != merged.get("settings", {}) | {"seed": 0}:
            raise ValueError("crossval results of different training settings cannot be merged")
        if other.get("features") != merged.get("features"):
            raise ValueError("crossval results of different features cannot be merged")
        if sorted(other.get("train_without", [])) != sorted(merged.get("train_without", [])):
            raise ValueError("crossval results trained without different sources cannot be merged")
        for seed, scores in other["oof"]["scores"].items():
            if seed in merged["oof"]["scores"]:
                raise ValueError(f"seed {seed} appears in more than one crossval result")
            merged["oof"]["scores"][seed] = scores
            merged["runs"][seed] = other["runs"][seed]
        merged["seeds"] = [*merged["seeds"], *other["seeds"]]
        if "clip_scores" in merged["oof"]:
            if "clip_scores" not in other["oof"] or other.get("clips") != merged.get("clips"):
                # clips of some seeds only, or of other lengths, would not average as one ensemble's
                del merged["oof"]["clip_scores"]
                merged.pop("clips", None)
            else:
                merged["oof"]["clip_scores"].update(other["oof"]["clip_scores"])
    merged.pop("summary", None)
    return merged


def _check_same_recordings(first: dict[str, Any], other: dict[str, Any]) -> None:
    for key in ("paths", "groups", "labels"):
        if first["oof"][key] != other["oof"][key]:
            raise ValueError(f"the crossval results held out different recordings ({key} differ)")


def combine_crossval(results: Sequence[dict[str, Any]], weights: Sequence[float]) -> dict[str, Any]:
    """A crossval result of the composite: each seed's held-out scores combined across the recipes.

    Seed ``s`` of the primary goes with seed ``s`` of every member (each fold model of one
    recipe is independent of the others', so the pairing is arbitrary but fixed). The result
    reads like ``python -m ml crossval``'s (``crossval-table``, ``calibrated_runs``), with the
    served scores under ``oof["served"]``: the recipes' seed averages combined, which is what
    a bundle of seed-averaged models gives and what its calibration is fitted on.
    """
    if len(results) != len(weights) + 1:
        raise ValueError("need one crossval result per model: the primary's, then one per member")
    first = results[0]
    for other in results[1:]:
        _check_same_recordings(first, other)
    seeds = [seed for seed in first["oof"]["scores"] if all(seed in r["oof"]["scores"] for r in results)]
    if not seeds:
        raise ValueError("the crossval results share no seed")
    combined = {
        seed: _nan_kept(
            combine_log_odds, [np.array(r["oof"]["scores"][seed], float) for r in results], weights
        )
        for seed in seeds
    }
    averaged = [calibration.held_out_mean(r) for r in results]
    found: dict[str, Any] = {
        "settings": first.get("settings", {}),
        "features": first.get("features", {}),
        "seeds": [int(seed) for seed in seeds],
        "floor": first.get("floor", {}),
        "members": {"weights": list(weights), "features": [r.get("features", {}) for r in results[1:]]},
        "oof": {
            **{key: first["oof"][key] for key in ("paths", "groups", "labels")},
            "scores": {seed: values.tolist() for seed, values in combined.items()},
            "served": _nan_kept(combine_log_odds, averaged, weights).tolist(),
        },
    }
    # The recipes' scores of the same clips (crossval --clip-scores cuts the same ones in every run).
    if all(seed in r["oof"].get("clip_scores", {}) for r in results for seed in seeds) and all(
        r.get("clips") == first.get("clips") for r in results
    ):
        found["clips"] = first["clips"]
        found["oof"]["clip_scores"] = {
            seed: _nan_kept(
                combine_log_odds, [np.array(r["oof"]["clip_scores"][seed], float) for r in results], weights
            ).tolist()
            for seed in seeds
        }
    return found


def combine_in_source(results: Sequence[dict[str, Any]], weights: Sequence[float]) -> dict[str, Any]:
    """Patient-grouped in-source metrics of the composite, per seed that every recipe ran.

    ``python -m ml crossval --in-source-folds K`` keeps each recording's score; runs of
    one seed share their folds, so the recipes' scores combine recording by recording
    (threshold 0.5 on the combined probability, as the recipes' own in-source figures).
    """
    from ml.train_command import grouped_metrics

    first = results[0]
    for other in results[1:]:
        _check_same_recordings(first, other)
    classes = ("normal", "abnormal")
    truth = np.array([classes.index(label) for label in first["oof"]["labels"]])
    found = {}
    for seed in first.get("in_source", {}):
        parts = [r.get("in_source", {}).get(seed, {}).get("scores") for r in results]
        if any(part is None for part in parts):
            continue
        positive = combine_log_odds([np.array(part, dtype=np.float64) for part in parts], weights)
        probabilities = np.stack([1 - positive, positive], axis=1)
        found[seed] = grouped_metrics(truth, probabilities, np.array(first["oof"]["groups"]), classes=classes)
        counts = {r["in_source"][seed].get("folds") for r in results}
        if len(counts) > 1:
            raise ValueError(
                f"the in-source runs of seed {seed} have different fold counts: {sorted(map(str, counts))}"
            )
        # Runs of one seed with one count share their folds.
        if counts != {None}:
            found[seed]["folds"] = counts.pop()
    return found


def _nan_kept(function: Any, scores: list[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """``function`` of the scores where every one is known, NaN (not held out) elsewhere."""
    known = np.all([~np.isnan(values) for values in scores], axis=0)
    out = np.full(len(scores[0]), np.nan)
    out[known] = function([values[known] for values in scores], weights)
    return out


def served_calibration(
    combined: dict[str, Any], *, out_of_distribution: dict[str, Any] | None
) -> dict[str, Any]:
    """Calibration of the composite from its served held-out scores (``combine_crossval``)."""
    served = np.array(combined["oof"]["served"], dtype=np.float64)
    keep = ~np.isnan(served)
    truth = (np.array(combined["oof"]["labels"]) == "abnormal")[keep]
    sources = np.array(combined["oof"]["groups"])[keep]
    fitted = calibration.fit_calibration(
        served[keep], truth, sources, source="leave-one-source-out scores of the combined models"
    )
    values = fitted.to_dict()
    values["metrics"] = {
        "nested_leave_one_source_out": calibration.nested_source_metrics(served[keep], truth, sources)
    }
    values["out_of_distribution"] = out_of_distribution
    return values


def build_composite(
    primary_dir: Path,
    members: Sequence[tuple[Path, float]],
    combined: dict[str, Any],
    *,
    out_dir: Path,
    name: str,
    version: str,
    in_source: dict[str, Any] | None = None,
) -> Manifest:
    """Copy the primary bundle and its members into ``out_dir`` and write the composite manifest.

    Raises BundleError when a bundle is invalid or already composite, or the result does not
    verify (members that score other classes or audio).
    """
    from ml.train_command import _held_out_rows, calibrated_runs, summarise_runs

    primary = verify_bundle(primary_dir)
    if primary.members:
        raise BundleError(f"{primary_dir} is already a composite bundle")
    if out_dir.exists():
        raise BundleError(f"{out_dir} exists: choose a new folder for the composite bundle")
    shutil.copytree(primary_dir, out_dir)
    entries = []
    for member_dir, weight in members:
        member = verify_bundle(member_dir)
        folder = MEMBER_FOLDER.sub("-", f"{member.name}-{member.version}")
        shutil.copytree(member_dir, out_dir / folder)
        entries.append(
            {
                "path": folder, "weight": weight, "weights_sha256": member.weights_sha256,
                "name": member.name, "version": member.version,
            }
        )  # fmt: skip
    values = served_calibration(combined, out_of_distribution=primary.calibration.get("out_of_distribution"))
    summary = summarise_runs(calibrated_runs(combined))
    metrics = dict(primary.metrics)
    metrics["leave_one_folder_out"] = {"groups": _held_out_rows(combined)}
    if in_source:
        metrics["in_source"] = in_source
    else:
        metrics.pop("in_source", None)  # the primary's alone would not describe the composite
    manifest = dataclasses.replace(
        primary,
        name=name,
        version=version,
        calibration=values,
        decision_threshold=values["threshold"],
        metrics=metrics,
        members=[{key: e[key] for key in ("path", "weight", "weights_sha256")} for e in entries],
    )
    card = composite_card(
        (out_dir / primary.card).read_text(encoding="utf-8"),
        manifest=manifest, primary=primary, entries=entries, summary=summary, seeds=combined["seeds"],
        in_source=in_source,
    )  # fmt: skip
    (out_dir / CARD_FILE).write_text(card, encoding="utf-8")
    text = json.dumps(dataclasses.replace(manifest, card=CARD_FILE).to_dict(), indent=2, sort_keys=True)
    (out_dir / MANIFEST_FILE).write_text(text + "\n", encoding="utf-8")
    return verify_bundle(out_dir)


def composite_card(
    primary_card: str,
    *,
    manifest: Manifest,
    primary: Manifest,
    entries: list[dict[str, Any]],
    summary: dict[str, Any],
    seeds: Sequence[int],
    in_source: dict[str, Any] | None = None,
) -> str:
    """The primary's card under the composite's name, its decision sections replaced by the composite's."""
    sections = _sections(primary_card)
    own_weight = 1.0 - sum(entry["weight"] for entry in entries)
    parts = [f"{primary.name} {primary.version} ({primary.features.kind} features), weight {own_weight:.2f}"]
    parts += [
        f"{entry['name']} {entry['version']} (folder `{entry['path']}`, with its own card), "
        f"weight {entry['weight']:.2f}"
        for entry in entries
    ]
    about = (
        "A recording's probability is the weighted mean of these models' log-odds, then calibrated:\n\n"
        + "\n".join(f"- {part}" for part in parts)
        + "\n\nThe sections below up to the segmentation describe the first model; the leave-one-source-out "
        "table, the calibration and the decision rule are the combined models'."
    )
    replaced = {"Leave one source out", "Calibration and decisions", "Must not be used for"}
    kept = [(heading, body) for heading, body in sections if heading not in replaced]
    cut = next((i for i, (heading, _) in enumerate(kept) if heading == "Caveats"), len(kept))
    added = [
        cards.leave_one_source_out_section(summary, seeds=seeds),
        *cards.calibration_sections(manifest.calibration),
    ]
    if in_source:
        added.insert(1, in_source_section(in_source))
    ordered = [("Models combined", about), *kept[:cut], *added, *kept[cut:]]
    lines = [f"# {manifest.name} {manifest.version}"]
    for heading, body in ordered:
        lines += ["", f"## {heading}", "", body.strip("\n")]
    return "\n".join(lines) + "\n"


def in_source_section(in_source: dict[str, Any]) -> tuple[str, str]:
    """The combined models' patient-grouped in-source figures, per seed (``combine_in_source``)."""
    reports = list(in_source.values())
    counts = {report.get("folds") for report in reports}
    sources = {len(report["groups"]) for report in reports}
    # Results from before the fold count was recorded do not say it.
    known = len(counts) == 1 and None not in counts
    folds = f"{_number(counts.pop()).capitalize()} folds" if known else "Folds"
    every = "all sources" if len(sources) != 1 else _every(sources.pop())
    lines = [
        f"{folds} over the patients of every source (a patient's recordings stay in one fold), "
        f"each fold's models trained on the rest of {every}, threshold 0.5 on the combined "
        "probability before calibration:",
        "",
    ]
    for seed, report in in_source.items():
        overall = report["overall"]
        groups = ", ".join(f"{name} {values['macc']:.3f}" for name, values in report["groups"].items())
        lines.append(
            f"- seed {seed}: MAcc {overall['macc']:.3f}, Se {overall['sensitivity']:.3f}, Sp "
            f"{overall['specificity']:.3f}, ROC AUC {overall['roc_auc']:.3f}; MAcc per source: {groups}"
        )
    return ("Patient-grouped in-source", "\n".join(lines))


_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _number(count: int) -> str:
    """A count in words up to ten, as the cards write them, in digits above."""
    return _NUMBER_WORDS[count] if 0 <= count < len(_NUMBER_WORDS) else str(count)


def _every(count: int) -> str:
    """'both sources', 'all seven sources'."""
    return "both sources" if count == 2 else f"all {_number(count)} sources"


def _sections(card: str) -> list[tuple[str, str]]:
    """A Markdown card's ``(heading, body)`` per ``## `` section (the title line is dropped)."""
    _, *rest = re.split(r"^## ", card, flags=re.MULTILINE)
    sections = []
    for part in rest:
        heading, _, body = part.partition("\n")
        sections.append((heading.strip(), body))
    return sections


def _crossval(spec: str) -> dict[str, Any]:
    """One recipe's crossval results from ``A.json[,B.json...]`` (seeds run separately)."""
    return merge_seeds([json.loads(Path(path).read_text(encoding="utf-8")) for path in spec.split(",")])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m ml combine``."""
    parser.add_argument("--primary", type=Path, required=True, help="bundle whose features give the timeline")
    parser.add_argument(
        "--crossval", required=True, help="the primary recipe's crossval JSON (several: A.json,B.json)"
    )
    parser.add_argument(
        "--member", type=Path, action="append", required=True, help="member bundle; repeatable"
    )
    parser.add_argument(
        "--member-crossval",
        action="append",
        required=True,
        help="each member recipe's crossval JSON, in order",
    )
    parser.add_argument("--weight", type=float, action="append", required=True, help="each member's weight")
    parser.add_argument("--out", type=Path, required=True, help="the composite bundle's folder (new)")
    parser.add_argument("--name", default=None)
    parser.add_argument("--version", required=True)
    parser.add_argument(
        "--crossval-out", type=Path, default=None, help="also write the combined crossval JSON"
    )
    parser.add_argument(
        "--in-source", default=None, help="the primary recipe's crossval --in-source-folds JSON (optional)"
    )
    parser.add_argument(
        "--member-in-source", action="append", default=[], help="each member recipe's, in order"
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``python -m ml combine``."""
    from ml.train_command import format_in_source

    if not len(args.member) == len(args.member_crossval) == len(args.weight):
        raise SystemExit("give one --member-crossval and one --weight per --member")
    try:
        combined = combine_crossval(
            [_crossval(args.crossval), *map(_crossval, args.member_crossval)], args.weight
        )
    except ValueError as exc:
        raise SystemExit(f"cannot combine the crossval results: {exc}") from exc
    in_source = None
    if args.in_source is not None:
        if len(args.member_in_source) != len(args.member):
            raise SystemExit("give one --member-in-source per --member with --in-source")
        in_source = combine_in_source(
            [_crossval(args.in_source), *map(_crossval, args.member_in_source)], args.weight
        )
        combined["in_source"] = in_source
        for seed, report in in_source.items():
            print(f"in source, seed {seed}: {format_in_source(report)}")
    if args.crossval_out is not None:
        args.crossval_out.write_text(json.dumps(combined, indent=1) + "\n", encoding="utf-8")
    name = args.name or read_manifest(args.primary).name
    try:
        manifest = build_composite(
            args.primary, list(zip(args.member, args.weight, strict=True)), combined,
            out_dir=args.out, name=name, version=args.version, in_source=in_source,
        )  # fmt: skip
    except BundleError as exc:
        raise SystemExit(str(exc)) from exc
    nested = manifest.calibration["metrics"]["nested_leave_one_source_out"]
    print(f"{args.out}: {manifest.name} {manifest.version}, threshold {manifest.decision_threshold:.2f}")
    for source, values in nested.items():
        print(
            f"  {source:12s} Se {values['sensitivity']:.3f}  Sp {values['specificity']:.3f}  "
            f"MAcc {values['macc']:.3f}  (calibrated on the other sources)"
        )
    return 0
