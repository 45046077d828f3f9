"""Composite bundles: models of other features averaged in log-odds, calibrated together.

The pure parts (combining scores and crossval results) on crafted numbers; the bundle
end to end with the shipped beat model as primary and a one-epoch log-mel model
trained on the committed samples as member.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml import calibration
from ml.__main__ import main
from ml.audio import decode_audio
from ml.bundle import (
    DEFAULT_SCREENING_BUNDLE,
    MANIFEST_FILE,
    pack_bundle,
    read_manifest,
    unpack_bundle,
    verify_bundle,
)
from ml.calibration import combine_log_odds
from ml.composite import build_composite, combine_crossval, merge_seeds
from ml.errors import BundleError
from tests.ml.conftest import SAMPLES, beat_model_of

SOURCES = ("site-a", "site-b", "site-c")


def crossval_result(seeds: dict[str, list[float]], *, paths: list[str] | None = None) -> dict[str, Any]:
    count = len(next(iter(seeds.values())))
    rng = np.random.default_rng(count)
    return {
        "settings": {"seed": 7, "units": 16},
        "features": {"kind": "cycles"},
        "seeds": [int(seed) for seed in seeds],
        "floor": {},
        "runs": {seed: {} for seed in seeds},
        "oof": {
            "paths": paths or [f"r{i}.wav" for i in range(count)],
            "groups": [SOURCES[i % 3] for i in range(count)],
            "labels": ["abnormal" if value > 0.5 else "normal" for value in rng.uniform(size=count)],
            "scores": seeds,
        },
    }


def test_log_odds_are_averaged_with_the_primary_weighing_what_the_members_leave() -> None:
    combined = combine_log_odds([np.array([0.9, 0.2]), np.array([0.5, 0.8])], [0.4])
    expected = calibration.sigmoid(
        0.6 * calibration.logit(np.array([0.9, 0.2])) + 0.4 * calibration.logit(np.array([0.5, 0.8]))
    )
    np.testing.assert_allclose(combined, expected)
    # a member at 0.5 adds nothing to the log-odds: the primary's are shrunk by its weight
    assert combined[0] == pytest.approx(calibration.sigmoid(0.6 * np.log(9)))


@pytest.mark.parametrize("weights", [[1.0], [0.6, 0.5], [0.0], [-0.1]])
def test_weights_outside_the_open_unit_interval_are_refused(weights: list[float]) -> None:
    scores = [np.array([0.5])] * (len(weights) + 1)
    with pytest.raises(ValueError, match="weights"):
        combine_log_odds(scores, weights)


def test_seeds_of_one_recipe_merge_and_a_repeated_seed_is_refused() -> None:
    first = crossval_result({"7": [0.1, 0.9, 0.4]})
    second = crossval_result({"8": [0.2, 0.7, 0.5]})
    merged = merge_seeds([first, second])
    assert merged["seeds"] == [7, 8]
    assert merged["oof"]["scores"] == {"7": [0.1, 0.9, 0.4], "8": [0.2, 0.7, 0.5]}
    with pytest.raises(ValueError, match="seed 7"):
        merge_seeds([first, first])


def test_seeds_trained_without_other_sources_do_not_merge() -> None:
    first = crossval_result({"7": [0.1, 0.9, 0.4]})
    second = {**crossval_result({"8": [0.2, 0.7, 0.5]}), "train_without": ["site-c"]}
    with pytest.raises(ValueError, match="trained without different sources"):
        merge_seeds([first, second])
    assert merge_seeds([{**first, "train_without": ["site-c"]}, second])["seeds"] == [7, 8]


def test_results_of_other_recordings_do_not_merge_or_combine() -> None:
    first = crossval_result({"7": [0.1, 0.9, 0.4]})
    other = crossval_result({"8": [0.2, 0.7, 0.5]}, paths=["x.wav", "y.wav", "z.wav"])
    with pytest.raises(ValueError, match="different recordings"):
        merge_seeds([first, other])
    with pytest.raises(ValueError, match="different recordings"):
        combine_crossval([first, other], [0.4])


def test_the_combined_crossval_pairs_seeds_and_serves_the_combined_seed_means() -> None:
    primary = crossval_result(
        {"7": [0.2, 0.8, float("nan")], "8": [0.4, 0.6, float("nan")], "9": [0.3, 0.3, 0.3]}
    )
    member = crossval_result({"7": [0.6, 0.9, 0.5], "8": [0.2, 0.5, 0.5]})
    combined = combine_crossval([primary, member], [0.25])
    assert combined["seeds"] == [7, 8]  # seed 9 has no member run
    seven = combined["oof"]["scores"]["7"]
    assert seven[0] == pytest.approx(float(combine_log_odds([np.array([0.2]), np.array([0.6])], [0.25])[0]))
    assert np.isnan(seven[2])  # not held out by the primary's seed 7
    served = combined["oof"]["served"]
    # the bundle averages each recipe's seeds inside its model, then combines the two
    primary_mean = np.array([(0.2 + 0.4 + 0.3) / 3, (0.8 + 0.6 + 0.3) / 3, 0.3])
    member_mean = np.array([0.4, 0.7, 0.5])
    np.testing.assert_allclose(served, combine_log_odds([primary_mean, member_mean], [0.25]))


def with_clips(result: dict[str, Any], clips: dict[str, list[float]]) -> dict[str, Any]:
    return {
        **result,
        "clips": {"shortest_s": 1.5, "longest_s": 4.0},
        "oof": {**result["oof"], "clip_scores": clips},
    }


def test_clip_scores_merge_with_their_seeds_and_combine_seed_by_seed() -> None:
    first = with_clips(crossval_result({"7": [0.1, 0.9, 0.4]}), {"7": [0.2, 0.8, 0.5]})
    second = with_clips(crossval_result({"8": [0.2, 0.7, 0.5]}), {"8": [0.3, 0.6, 0.5]})
    merged = merge_seeds([first, second])
    assert merged["oof"]["clip_scores"] == {"7": [0.2, 0.8, 0.5], "8": [0.3, 0.6, 0.5]}
    # a seed without clips: the merged result has none rather than an ensemble of some seeds
    assert "clip_scores" not in merge_seeds([first, crossval_result({"8": [0.2, 0.7, 0.5]})])["oof"]
    member = with_clips(crossval_result({"7": [0.6, 0.9, 0.5]}), {"7": [0.5, 0.7, 0.1]})
    combined = combine_crossval([first, member], [0.25])
    expected = combine_log_odds([np.array([0.2, 0.8, 0.5]), np.array([0.5, 0.7, 0.1])], [0.25])
    np.testing.assert_allclose(combined["oof"]["clip_scores"]["7"], expected)
    assert combined["clips"] == first["clips"]
    # clips of another length are other recordings' stretches: not combined
    longer = {**member, "clips": {"shortest_s": 4.0, "longest_s": 8.0}}
    assert "clip_scores" not in combine_crossval([first, longer], [0.25])["oof"]
    # nor with a member that scored none
    assert (
        "clip_scores" not in combine_crossval([first, crossval_result({"7": [0.6, 0.9, 0.5]})], [0.25])["oof"]
    )
    # a first result without clips gains none from later ones; clips dropped stay dropped
    plain = crossval_result({"6": [0.3, 0.6, 0.5]})
    assert "clip_scores" not in merge_seeds([plain, first, second])["oof"]
    third = with_clips(crossval_result({"9": [0.1, 0.2, 0.3]}), {"9": [0.1, 0.2, 0.3]})
    assert "clip_scores" not in merge_seeds([first, plain, third])["oof"]


@pytest.fixture(scope="module")
def logmel_member(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("member") / "logmel"
    status = main(
        [
            "train", "--data", str(SAMPLES), "--out", str(out), "--epochs", "1",
            "--windows-per-recording", "2", "--cache", str(tmp_path_factory.mktemp("cache")),
            "--name", "frames", "--version", "0.1.0", "--min-duration", "1.0", "--classes", "normal,abnormal",
        ]
    )  # fmt: skip
    assert status == 0
    return out


def held_out_like(count: int = 60) -> dict[str, Any]:
    """Crafted held-out scores over three sources for both recipes (abnormal scored higher)."""
    rng = np.random.default_rng(3)
    labels = ["abnormal" if i % 3 == 0 else "normal" for i in range(count)]
    truth = np.array([label == "abnormal" for label in labels])

    def scores() -> list[float]:
        return np.clip(0.35 + 0.3 * truth + rng.normal(0, 0.15, count), 0.01, 0.99).tolist()

    def result() -> dict[str, Any]:
        return {
            "seeds": [7, 8],
            "oof": {
                "paths": [f"r{i}.wav" for i in range(count)],
                "groups": [SOURCES[(i // 3) % 3] for i in range(count)],
                "labels": labels,
                "scores": {"7": scores(), "8": scores()},
            },
        }

    return combine_crossval([result(), result()], [0.4])


@pytest.fixture(scope="module")
def beats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped bundle's beat model alone (the primary of these composites)."""
    return beat_model_of(DEFAULT_SCREENING_BUNDLE, tmp_path_factory.mktemp("beats") / "beats")


@pytest.fixture(scope="module")
def composite(tmp_path_factory: pytest.TempPathFactory, beats: Path, logmel_member: Path) -> Path:
    out = tmp_path_factory.mktemp("composite") / "bundle"
    build_composite(
        beats, [(logmel_member, 0.4)], held_out_like(),
        out_dir=out, name="screening-pair", version="9.9.9",
    )  # fmt: skip
    return out


def test_a_composite_bundle_verifies_and_names_its_member(composite: Path, beats: Path) -> None:
    manifest = verify_bundle(composite)
    assert manifest.name == "screening-pair"
    member = verify_bundle(composite / "frames-0.1.0")
    assert manifest.members == [
        {"path": "frames-0.1.0", "weight": 0.4, "weights_sha256": member.weights_sha256}
    ]
    assert manifest.decision_threshold == manifest.calibration["threshold"]
    assert (
        manifest.calibration["out_of_distribution"] == read_manifest(beats).calibration["out_of_distribution"]
    )
    assert set(manifest.calibration["metrics"]["nested_leave_one_source_out"]) == set(SOURCES)
    card = (composite / "CARD.md").read_text()
    assert card.startswith("# screening-pair 9.9.9")
    assert "frames 0.1.0 (folder `frames-0.1.0`, with its own card), weight 0.40" in card
    assert card.count("## Calibration and decisions") == 1
    assert f"slope {manifest.calibration['slope']:.3f}" in card


def test_it_scores_the_weighted_log_odds_of_both_models_then_calibrates(
    composite: Path, beats: Path, logmel_member: Path
) -> None:
    from ml.inference import Engine

    engine = Engine.load(composite)
    primary = Engine.load(beats)
    member = Engine.load(logmel_member)
    audios = [decode_audio(path) for path in sorted(SAMPLES.glob("*.wav"))[:4]]
    found = engine.classify(audios)
    alone = [result.raw_probability for result in primary.classify(audios)]
    member_alone = [result.raw_probability for result in member.classify(audios)]
    expected = combine_log_odds([np.array(alone), np.array(member_alone)], [0.4])
    np.testing.assert_allclose([result.raw_probability for result in found], expected, rtol=1e-5)
    assert not np.allclose(expected, alone)  # the member moved the score
    # what evaluate and crossval score is what classify decides on
    scored = engine.score([audio.samples for audio in audios])
    np.testing.assert_allclose(scored[:, 1], expected, rtol=1e-5)
    for result in found:
        calibrated = engine.calibration.probability(np.array([result.raw_probability]))[0]
        assert result.probabilities["abnormal"] == pytest.approx(calibrated)
        assert result.label == ("abnormal" if calibrated >= engine.manifest.decision_threshold else "normal")
        assert result.segments is not None and result.segments["cycles"] > 0  # from the beat model
        assert result.timings["features_ms"] > 0


def test_a_packed_composite_unpacks_with_its_member(composite: Path, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    pack_bundle(composite, buffer)
    buffer.seek(0)
    unpacked = unpack_bundle(buffer, tmp_path / "copy")
    assert verify_bundle(unpacked).members == verify_bundle(composite).members
    assert (unpacked / "frames-0.1.0" / MANIFEST_FILE).is_file()


def rewrite(bundle: Path, **changes: Any) -> None:
    path = bundle / MANIFEST_FILE
    values = json.loads(path.read_text())
    values.update(changes)
    path.write_text(json.dumps(values))


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([{"path": "../frames-0.1.0", "weight": 0.4}], "one folder name"),
        ([{"path": "frames-0.1.0", "weight": 1.4}], "weight between 0 and 1"),
        (
            [
                {"path": "frames-0.1.0", "weight": 0.6, "weights_sha256": "SHA"},
                {"path": "frames-0.1.0", "weight": 0.5, "weights_sha256": "SHA"},
            ],
            "add up",
        ),
        ([{"path": "frames-0.1.0", "weight": 0.4, "weights_sha256": "0" * 64}], "other weights"),
        ([{"path": "missing", "weight": 0.4}], "not found"),
    ],
)
def test_bad_member_entries_are_refused(
    composite: Path, tmp_path: Path, members: list[dict[str, Any]], message: str
) -> None:
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(composite, copy)
    sha = read_manifest(copy / "frames-0.1.0").weights_sha256
    rewrite(
        copy,
        members=[
            {**entry, "weights_sha256": sha} if entry.get("weights_sha256") == "SHA" else entry
            for entry in members
        ],
    )
    with pytest.raises(BundleError, match=message):
        verify_bundle(copy)


def test_a_member_that_reads_other_audio_is_refused(composite: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(composite, copy)
    member = copy / "frames-0.1.0"
    manifest = read_manifest(member)
    features = dataclasses.replace(manifest.features, band_high_hz=950.0)
    rewrite(member, feature_config=features.to_dict(), feature_fingerprint=features.fingerprint())
    with pytest.raises(BundleError, match="reads audio at 2000 Hz, 25-950 Hz"):
        verify_bundle(copy)


def test_a_composite_cannot_become_a_member_or_a_primary(composite: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="already a composite"):
        build_composite(composite, [], {}, out_dir=tmp_path / "again", name="x", version="1")


def test_in_source_scores_of_one_seed_combine_recording_by_recording() -> None:
    from ml.composite import combine_in_source

    primary = crossval_result({"7": [float("nan")] * 6})
    member = crossval_result({"7": [float("nan")] * 6})
    labels = primary["oof"]["labels"]
    truth = np.array([label == "abnormal" for label in labels])
    # the primary ranks every recording wrongly, the member rightly and more confidently
    primary["in_source"] = {"7": {"scores": np.where(truth, 0.4, 0.6).tolist(), "folds": 3}}
    member["in_source"] = {"7": {"scores": np.where(truth, 0.9, 0.1).tolist(), "folds": 3}}
    found = combine_in_source([primary, member], [0.5])
    assert found["7"]["overall"]["count"] == 6
    assert found["7"]["folds"] == 3
    assert found["7"]["overall"]["macc"] == pytest.approx(1.0)
    assert combine_in_source([primary, member], [0.05])["7"]["overall"]["macc"] == pytest.approx(0.0)
    # runs of one seed with other fold counts did not share their folds
    member["in_source"]["7"]["folds"] = 5
    with pytest.raises(ValueError, match="different fold counts"):
        combine_in_source([primary, member], [0.5])
    del member["in_source"]
    assert combine_in_source([primary, member], [0.5]) == {}


def test_the_in_source_figures_go_into_the_manifest_and_the_card(
    tmp_path: Path, beats: Path, logmel_member: Path
) -> None:
    report = {
        "overall": {"macc": 0.83, "sensitivity": 0.77, "specificity": 0.89, "roc_auc": 0.9},
        "groups": {"site-a": {"macc": 0.8}, "site-b": {"macc": 0.86}},
    }
    manifest = build_composite(
        beats, [(logmel_member, 0.4)], held_out_like(),
        out_dir=tmp_path / "bundle", name="pair", version="1.0.0", in_source={"7": report},
    )  # fmt: skip
    assert manifest.metrics["in_source"] == {"7": report}
    card = (tmp_path / "bundle" / "CARD.md").read_text()
    assert "## Patient-grouped in-source" in card
    assert "- seed 7: MAcc 0.830, Se 0.770, Sp 0.890, ROC AUC 0.900; MAcc per source: site-a 0.800" in card
    # results from before the fold count was recorded do not say it
    assert "Folds over the patients of every source" in card
    assert "trained on the rest of both sources" in card


def test_the_in_source_card_says_how_many_folds_and_sources_the_runs_had() -> None:
    from ml.composite import in_source_section

    report = {
        "overall": {"macc": 0.83, "sensitivity": 0.77, "specificity": 0.89, "roc_auc": 0.9},
        "groups": {name: {"macc": 0.8} for name in ("a", "b", "c")},
        "folds": 4,
    }
    heading, body = in_source_section({"7": report})
    assert heading == "Patient-grouped in-source"
    assert body.startswith("Four folds over the patients of every source")
    assert "the rest of all three sources" in body
    body = in_source_section({"7": report, "8": {**report, "folds": 12}})[1]
    assert body.startswith("Folds over the patients")
    body = in_source_section({"7": {**report, "folds": 12}})[1]
    assert body.startswith("12 folds over the patients")
