"""The worker's classifier: what it stores is what Classification.to_dict gives (asdict's values),
and what its processes do when they start."""

import dataclasses
from pathlib import Path
from typing import Any

from jobs.services.analysis import Claim, Fetched

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "physionet"


def test_worker_results_match_the_classifications_dicts(default_model: Any) -> None:
    from workers.engine import classify, engine_for

    paths = sorted(SAMPLES.glob("*.wav"))[:3]
    fetched = [
        Fetched(Claim(index, index, 1, f"key-{index}", "0" * 64), path.read_bytes())
        for index, path in enumerate(paths)
    ]
    engine = engine_for(default_model)
    expected = engine.classify([engine.decode(item.audio) for item in fetched])
    for found in expected:
        assert found.to_dict() == dataclasses.asdict(found)
    results = classify(default_model, fetched)
    assert len(results) == len(expected)
    for result, found in zip(results, expected, strict=True):
        assert result.classification is not None
        timings = result.classification.pop("timings")
        wanted = found.to_dict()
        assert result.classification == {key: value for key, value in wanted.items() if key != "timings"}
        assert set(timings) == {"decode_ms", *wanted["timings"]}


def test_a_new_worker_process_freezes_what_start_up_left_out_of_the_garbage_collector(
    default_model: Any,
) -> None:
    import gc

    from workers import engine, tasks

    gc.unfreeze()
    try:
        tasks._load_model()
        # The default model is loaded first, so its objects are among those frozen.
        assert engine.engine_for(default_model) is not None
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
