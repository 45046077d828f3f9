"""Training command helpers that need no TensorFlow."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ml.features import FeatureConfig
from ml.train_command import load_crossval
from ml.training import TrainSettings


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


def test_it_reads_settings_missing_from_older_crossval_results_as_defaults(tmp_path: Path) -> None:
    settings = TrainSettings(epochs=3)
    recorded = dataclasses.asdict(settings)
    del recorded["mixstyle"]
    path = tmp_path / "lofo.json"
    path.write_text(json.dumps({"settings": recorded, "folds": {"a": {}}}))
    assert load_crossval(path, settings=settings, config=FeatureConfig())["folds"] == {"a": {}}
    with pytest.raises(SystemExit):
        load_crossval(path, settings=TrainSettings(epochs=3, mixstyle=True), config=FeatureConfig())
