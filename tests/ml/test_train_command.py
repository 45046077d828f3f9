"""Training command helpers and arguments that need no TensorFlow."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from ml import train_arguments, train_command
from ml.__main__ import main
from ml.datasets import Dataset, Entry
from ml.features import FeatureConfig
from ml.train_arguments import features_from, settings_from
from ml.train_command import load_crossval
from ml.training import TrainSettings


def _train_arguments(*words: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train_arguments.add_arguments(parser)
    return parser.parse_args(["--data", "recordings", "--out", "bundle", *words])


def test_it_reads_no_options_as_the_default_settings() -> None:
    args = _train_arguments()
    assert settings_from(args) == TrainSettings()
    assert features_from(args) == FeatureConfig()


def test_it_reads_the_beat_and_training_options() -> None:
    args = _train_arguments(
        "--feature-kind", "cycles", "--beats-per-window", "6", "--beat-spreads", "--beat-profile",
        "--no-augment", "--balance", "source", "--patience", "6", "--members", "3",
    )  # fmt: skip
    config, settings = features_from(args), settings_from(args)
    assert (config.kind, config.beats_per_window, config.beats_hop) == ("cycles", 6, 3)
    assert config.beat_spreads and config.beat_profile
    assert (settings.augment, settings.balance, settings.patience, settings.members) == (
        False,
        "source",
        6,
        3,
    )


def test_it_parses_a_command_with_its_arguments_and_runs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[argparse.Namespace] = []

    def run_table(args: argparse.Namespace) -> int:
        ran.append(args)
        return 0

    monkeypatch.setattr(train_command, "run_table", run_table)
    assert main(["crossval-table", "lofo.json"]) == 0
    assert [args.results for args in ran] == [Path("lofo.json")]


def test_it_lists_the_training_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--help"])
    assert stopped.value.code == 0
    printed = capsys.readouterr().out
    assert "--beat-profile" in printed and "--holdout" in printed


def test_it_refuses_crossval_results_of_another_recipe(tmp_path: Path) -> None:
    settings, config = TrainSettings(epochs=3), FeatureConfig()
    path = tmp_path / "lofo.json"
    results = {"settings": dataclasses.asdict(settings), "features": config.to_dict(), "folds": {}}
    path.write_text(json.dumps(results))
    assert load_crossval(path, settings=settings, config=config)["folds"] == {}
    with pytest.raises(SystemExit, match="training settings"):
        load_crossval(path, settings=TrainSettings(epochs=4), config=config)
    with pytest.raises(SystemExit, match="feature settings"):
        load_crossval(path, settings=settings, config=FeatureConfig(n_mels=16))


def test_it_refuses_crossval_results_that_never_trained_on_a_source_this_run_trains_on(
    tmp_path: Path,
) -> None:
    settings, config = TrainSettings(), FeatureConfig()
    path = tmp_path / "lofo.json"
    results = {"settings": dataclasses.asdict(settings), "features": config.to_dict(), "folds": {},
               "train_without": ["training-e"]}  # fmt: skip
    path.write_text(json.dumps(results))
    with pytest.raises(SystemExit, match="without training on training-e"):
        load_crossval(path, settings=settings, config=config)
    assert load_crossval(path, settings=settings, config=config, holdout=["training-e"])["folds"] == {}


def test_it_reads_settings_missing_from_older_crossval_results_as_defaults(tmp_path: Path) -> None:
    settings = TrainSettings(epochs=3)
    recorded = dataclasses.asdict(settings)
    del recorded["mixstyle"]
    path = tmp_path / "lofo.json"
    path.write_text(json.dumps({"settings": recorded, "folds": {"a": {}}}))
    assert load_crossval(path, settings=settings, config=FeatureConfig())["folds"] == {"a": {}}
    with pytest.raises(SystemExit):
        load_crossval(path, settings=TrainSettings(epochs=3, mixstyle=True), config=FeatureConfig())


def _crossval_file(
    folder: Path, groups: list[str], truth: np.ndarray, scores: np.ndarray, *, clips: np.ndarray | None = None
) -> Path:
    """A one-seed crossval result of these held-out scores (and clip scores), written as JSON."""
    results: dict[str, object] = {
        "seeds": [7],
        "floor": {},
        "oof": {"paths": [f"r{i}" for i in range(len(groups))], "groups": groups,
                "labels": ["abnormal" if t else "normal" for t in truth], "scores": {"7": scores.tolist()}},
    }  # fmt: skip
    if clips is not None:
        results["clips"] = {"shortest_s": 1.5, "longest_s": 4.0}
        results["oof"]["clip_scores"] = {"7": clips.tolist()}  # type: ignore[index]
    path = folder / "lofo.json"
    path.write_text(json.dumps(results))
    return path


def test_the_table_shows_what_the_uncertain_band_holds_back_on_each_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(3)
    count = 120
    groups = ["x", "y", "z"] * (count // 3)
    truth = rng.uniform(size=count) < 0.5
    scores = np.clip(np.where(truth, 0.7, 0.3) + rng.normal(0, 0.15, count), 0.01, 0.99)
    path = _crossval_file(tmp_path, groups, truth, scores)
    assert train_command.run_table(argparse.Namespace(results=path)) == 0
    printed = capsys.readouterr().out
    assert "The `uncertain` band (calibrated probability within 0.10 of the threshold" in printed
    from ml import calibration

    expected = calibration.nested_source_metrics(scores, truth, np.array(groups))
    for name in ("x", "y", "z"):
        v = expected[name]
        assert 0 < v["uncertain_share"] < 1
        assert f"| {name} | {v['uncertain_share']:.2f} | {v['sensitivity']:.3f} / " in printed
        assert (
            f"| {v['decided_macc']:.3f} | {v['called_positive_share']:.2f} | {v['shift_distance']:.2f} | no |"
            in printed
        )
    assert "| mean over sources |" in printed
    # no band: nothing is held back and the decided figures are those of all recordings
    assert train_command.run_table(argparse.Namespace(results=path, margin=0.0)) == 0
    printed = capsys.readouterr().out
    assert "within 0.00 of the threshold" in printed
    for name in ("x", "y", "z"):
        v = expected[name]
        assert (
            f"| {name} | 0.00 | {v['sensitivity']:.3f} / {v['specificity']:.3f} | {v['macc']:.3f} | "
            in printed
        )


def test_the_table_shows_held_out_sources_scored_on_short_clips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(4)
    count = 120
    groups = np.array(["x", "y", "z"] * (count // 3))
    truth = rng.uniform(size=count) < 0.5
    whole = np.clip(np.where(truth, 0.7, 0.3) + rng.normal(0, 0.15, count), 0.01, 0.99)
    # clips rank the recordings as well but score every one lower: the whole-recording rule misses
    clip = np.clip(whole - 0.25, 0.01, 0.99)
    path = _crossval_file(tmp_path, groups.tolist(), truth, whole, clips=clip)
    assert train_command.run_table(argparse.Namespace(results=path)) == 0
    printed = capsys.readouterr().out
    assert "Short clips: one stretch of 1.5-4.0 s of every held-out recording" in printed
    from ml import calibration

    served = calibration.nested_source_metrics(whole, truth, groups, applied=clip)
    own = calibration.nested_source_metrics(clip, truth, groups)
    for name in ("x", "y", "z"):
        a, b = served[name], own[name]
        assert a["sensitivity"] < b["sensitivity"]  # the lower clip scores fall below the whole rule
        assert (
            f"{a['sensitivity']:.3f} / {a['specificity']:.3f} / {a['macc']:.3f} | "
            f"{b['sensitivity']:.3f} / {b['specificity']:.3f} / {b['macc']:.3f} |"
        ) in printed


def test_the_table_says_which_source_the_batch_shift_check_warns_of(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(5)
    groups = ["x"] * 100 + ["y"] * 100 + ["shifted"] * 100 + ["small"] * 10
    truth = np.tile(np.arange(10) < 3, 31)
    shift = {"x": 0.0, "y": 0.0, "shifted": 3.0, "small": 0.0}  # a device adding 3 to the log-odds
    logits = np.array([2.0 * t - 1.0 + shift[g] for g, t in zip(groups, truth, strict=True)])
    scores = 1 / (1 + np.exp(-(logits + rng.normal(0, 0.5, len(logits)))))
    path = _crossval_file(tmp_path, groups, truth, scores)
    assert train_command.run_table(argparse.Namespace(results=path)) == 0
    rows = {  # the band's table: nine columns
        line.split(" | ")[0].strip("| "): line
        for line in capsys.readouterr().out.splitlines()
        if line.count("|") == 10
    }
    assert rows["shifted"].endswith("| yes |")
    assert rows["x"].endswith("| no |") and rows["y"].endswith("| no |")
    assert rows["small"].endswith("| - |")  # 10 recordings: too few for the check to judge


@pytest.mark.parametrize("text", ["0.5", "-0.1", "wide"])
def test_the_table_refuses_a_band_it_cannot_draw(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    train_arguments.add_table_arguments(parser)
    assert parser.parse_args(["r.json", "--margin", "0.2"]).margin == 0.2
    assert parser.parse_args(["r.json"]).margin == 0.1
    with pytest.raises(SystemExit):
        parser.parse_args(["r.json", "--margin", text])
    assert "--margin" in capsys.readouterr().err


def test_the_table_of_an_in_source_only_run_shows_its_in_source_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overall = {"macc": 0.81, "sensitivity": 0.74, "specificity": 0.88, "roc_auc": 0.89}
    results = {
        "seeds": [7],
        "oof": {"paths": ["a", "b"], "groups": ["x", "y"], "labels": ["normal", "abnormal"],
                "scores": {"7": [None, None]}},
        "in_source": {"7": {"overall": overall, "groups": {}}},
    }  # fmt: skip
    path = tmp_path / "in-source.json"
    path.write_text(json.dumps(results))
    assert train_command.run_table(argparse.Namespace(results=path)) == 0
    printed = capsys.readouterr().out
    assert "seed 7: MAcc 0.810, Se 0.740, Sp 0.880, AUC 0.890" in printed
    assert "| recipe |" not in printed


class _Trained(Exception):
    """Raised by the stand-in trainer once it has seen what a fold trains on."""


def test_no_fold_trains_on_a_train_without_source_and_its_own_fold_still_holds_it_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entries = tuple(
        Entry(path=f"{group}/{index}.wav", label=("normal", "abnormal")[index % 2], group=group)
        for group in ("circor2022", "training-a", "training-e")
        for index in range(4)
    )
    dataset = Dataset(
        root=Path("."), entries=entries, samples=tuple(np.zeros(8) for _ in entries), fingerprint="x"
    )
    trained_on: list[set[str]] = []

    def fit_bundle(subset: Dataset, **_: object) -> None:
        trained_on.append(set(subset.groups.tolist()))
        raise _Trained

    monkeypatch.setattr(train_command, "fit_bundle", fit_bundle)
    never = dataset.groups == "training-e"
    for fold in ("circor2022", "training-e"):
        with pytest.raises(_Trained):
            train_command.crossval_run(
                dataset, [fold], classes=("normal", "abnormal"), config=FeatureConfig(),
                settings=TrainSettings(), never_trained=never,
            )  # fmt: skip
    assert trained_on == [{"training-a"}, {"circor2022", "training-a"}]
    with pytest.raises(_Trained):
        train_command.crossval_run(
            dataset, ["circor2022"], classes=("normal", "abnormal"), config=FeatureConfig(),
            settings=TrainSettings(),
        )  # fmt: skip
    assert trained_on[-1] == {"training-a", "training-e"}
    with pytest.raises(_Trained):
        train_command.in_source_run(
            dataset, 2, classes=("normal", "abnormal"), config=FeatureConfig(), settings=TrainSettings(),
            never_trained=never,
        )  # fmt: skip
    assert "training-e" not in trained_on[-1]


def test_in_source_folds_score_every_recording_once_and_record_their_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entries = tuple(
        Entry(path=f"{group}/{index}.wav", label=("normal", "abnormal")[index % 2], group=group)
        for group in ("circor2022", "training-a")
        for index in range(6)
    )
    dataset = Dataset(
        root=Path("."), entries=entries, samples=tuple(np.zeros(8) for _ in entries), fingerprint="x"
    )
    held_counts: list[int] = []

    def fit_and_score(subset: Dataset, held: np.ndarray, **_: object) -> dict[str, object]:
        held_counts.append(int(held.sum()))
        # a perfect ranking: abnormal recordings score 0.9, normal ones 0.1
        return {"positive": [0.9 if label == "abnormal" else 0.1 for label in subset.labels[held]]}

    monkeypatch.setattr(train_command, "_fit_and_score", fit_and_score)
    report = train_command.in_source_run(
        dataset, 3, classes=("normal", "abnormal"), config=FeatureConfig(), settings=TrainSettings()
    )
    assert report["folds"] == 3
    assert len(held_counts) == 3 and sum(held_counts) == len(entries)
    assert report["scores"] == [0.9 if label == "abnormal" else 0.1 for label in dataset.labels]
    assert report["overall"]["macc"] == pytest.approx(1.0)
    assert set(report["groups"]) == {"circor2022", "training-a"}


def test_a_short_clip_is_a_stretch_of_the_recording_as_long_as_a_handheld_clip() -> None:
    rate = 2000
    samples = np.arange(30 * rate, dtype=np.float64)  # 30 s whose values say where they were
    lengths = []
    for index in range(50):
        clip = train_command.short_clip(samples, sample_rate=rate, rng=np.random.default_rng(index))
        assert (
            train_command.CLIP_SHORTEST_S * rate - 1 <= len(clip) <= train_command.CLIP_LONGEST_S * rate + 1
        )
        np.testing.assert_array_equal(clip, np.arange(clip[0], clip[0] + len(clip)))  # contiguous
        lengths.append(len(clip))
    assert len(set(lengths)) > 10  # lengths spread over the range, not one value
    short = np.ones(rate)  # 1 s: shorter than any clip, kept whole
    assert train_command.short_clip(short, sample_rate=rate, rng=np.random.default_rng(0)) is short


def test_the_clips_are_the_same_for_every_seed_and_run() -> None:
    rate = 2000
    entries = tuple(Entry(path=f"a/{i}.wav", label="normal", group="a") for i in range(5))
    samples = tuple(np.random.default_rng(i).normal(size=20 * rate) for i in range(5))
    dataset = Dataset(root=Path("."), entries=entries, samples=samples, fingerprint="x")
    first = train_command.short_clips(dataset, sample_rate=rate)
    again = train_command.short_clips(dataset, sample_rate=rate)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert len({len(clip) for clip in first}) > 1  # each recording draws its own


def test_crossval_scores_each_held_out_recording_on_its_own_clip(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rate = 2000
    # the sources interleaved, so that a fold's recordings are not one block of the data
    entries = tuple(
        Entry(path=f"{group}/{index}.wav", label=("normal", "abnormal")[index % 2], group=group)
        for index in range(4)
        for group in ("circor2022", "training-a")
    )
    # each recording's samples are its index: a clip of it says whose it is
    samples = tuple(np.full(10 * rate, float(index)) for index in range(len(entries)))
    dataset = Dataset(root=Path("."), entries=entries, samples=samples, fingerprint="x")

    def fit_and_score(
        subset: Dataset, held: np.ndarray, *, clips: list[np.ndarray] | None, **_: object
    ) -> dict[str, object]:
        metrics = {"macc": 0.5, "classes": ["normal", "abnormal"], "confusion_matrix": [[1, 0], [0, 1]]}
        # a score that says which recording, and which recording's clip, was scored
        found: dict[str, object] = {
            "metrics": metrics,
            "positive": [float(subset.samples[i][0]) / 100 for i in np.flatnonzero(held)],
        }
        if clips is not None:
            assert all(len(clip) <= train_command.CLIP_LONGEST_S * rate + 1 for clip in clips)
            found["clip_positive"] = [0.5 + float(clip[0]) / 100 for clip in clips]
        return found

    monkeypatch.setattr(train_command, "load_all", lambda *_: dataset)
    monkeypatch.setattr(train_command, "crossval_floor", lambda *_, **__: {"folds": {}})
    monkeypatch.setattr(train_command, "_fit_and_score", fit_and_score)
    parser = argparse.ArgumentParser()
    train_arguments.add_crossval_arguments(parser)
    out = tmp_path / "clips.json"
    args = parser.parse_args(["--data", "d", "--out", str(out), "--seeds", "7,8", "--clip-scores"])
    assert train_command.run_crossval(args) == 0
    results = json.loads(out.read_text())
    assert results["clips"] == {
        "shortest_s": train_command.CLIP_SHORTEST_S, "longest_s": train_command.CLIP_LONGEST_S,
        "seed": train_command.CLIP_SEED, "sample_rate": rate,
    }  # fmt: skip
    for seed in ("7", "8"):
        assert results["oof"]["scores"][seed] == pytest.approx([index / 100 for index in range(8)])
        assert results["oof"]["clip_scores"][seed] == pytest.approx([0.5 + index / 100 for index in range(8)])
    # without the option no clip is cut or scored
    plain = tmp_path / "plain.json"
    monkeypatch.setattr(train_command, "short_clips", lambda *_, **__: pytest.fail("clips cut"))
    assert train_command.run_crossval(parser.parse_args(["--data", "d", "--out", str(plain)])) == 0
    assert "clip_scores" not in json.loads(plain.read_text())["oof"]


def test_crossval_refuses_a_train_without_source_the_data_lack(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    entries = tuple(Entry(path=f"training-a/{i}.wav", label="normal", group="training-a") for i in range(2))
    dataset = Dataset(root=Path("."), entries=entries, samples=(np.zeros(8), np.zeros(8)), fingerprint="x")
    monkeypatch.setattr(train_command, "load_all", lambda *_: dataset)
    parser = argparse.ArgumentParser()
    train_arguments.add_crossval_arguments(parser)
    args = parser.parse_args(
        ["--data", "d", "--out", str(tmp_path / "o.json"), "--train-without", "training-x"]
    )
    with pytest.raises(SystemExit, match="training-x"):
        train_command.run_crossval(args)
    assert not (tmp_path / "o.json").exists()


def test_crossval_reads_train_without_sources() -> None:
    parser = argparse.ArgumentParser()
    train_arguments.add_crossval_arguments(parser)
    args = parser.parse_args(
        ["--data", "d", "--out", "o.json", "--train-without", "training-e", "--train-without", "set-A"]
    )
    assert args.train_without == ["training-e", "set-A"]
