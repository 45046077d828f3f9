"""Diffs between versions and weekly drift, on constructed predictions (no model needed)."""

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from jobs.models import Recording
from jobs.services import comparison, drift
from tests import factories
from tests.registry.conftest import api_as, predict

# (truth, label by A, label by B) for ten recordings both versions read.
CASES = (
    [("normal", "normal", "normal")] * 4
    + [("abnormal", "abnormal", "abnormal")] * 2
    + [("normal", "normal", "abnormal")] * 2
    + [("abnormal", "normal", "abnormal")]
    + [("", "abnormal", "normal")]
)


@pytest.fixture
def versions(db: None) -> tuple[Any, Any]:
    binary = {"positive_class": "abnormal"}
    return (
        factories.ModelVersionFactory(version="1", classes=["normal", "abnormal"], manifest=binary),
        factories.ModelVersionFactory(version="2", classes=["normal", "abnormal"], manifest=binary),
    )


@pytest.fixture
def constructed(versions: tuple[Any, Any], north: Any) -> list[Any]:
    a, b = versions
    batch = factories.BatchFactory(organisation=north, model_version=a)
    recordings = []
    for index, (truth, label_a, label_b) in enumerate(CASES):
        recording = factories.RecordingFactory(batch=batch, path=f"r{index:02}.wav", label=truth)
        predict(recording, a, label_a, **{label_a: 0.8, _other(label_a): 0.2})
        predict(recording, b, label_b, **{label_b: 0.6, _other(label_b): 0.4})
        recordings.append(recording)
    only_a = factories.RecordingFactory(batch=batch, path="only-a.wav", label="normal")
    predict(only_a, a, "abnormal")
    return recordings


def _other(label: str) -> str:
    return "abnormal" if label == "normal" else "normal"


def test_it_counts_agreement_flips_and_changed_recordings(versions: Any, constructed: list[Any]) -> None:
    a, b = versions

    diff = comparison.compare_versions(a, b, Recording.objects.all())

    assert (diff.compared, diff.agreed, diff.changed) == (10, 6, 4)
    assert diff.agreement_rate == pytest.approx(0.6)
    assert diff.matrix == {"abnormal": {"abnormal": 2, "normal": 1}, "normal": {"abnormal": 3, "normal": 4}}
    assert sorted((flip["from"], flip["to"], flip["count"]) for flip in diff.flips) == [
        ("abnormal", "normal", 1),
        ("normal", "abnormal", 3),
    ]
    assert [change.path for change in diff.changes] == ["r06.wav", "r07.wav", "r08.wav", "r09.wav"]
    first = diff.changes[0]
    assert (first.label_a, first.label_b) == ("normal", "abnormal")
    assert first.probabilities_a == {"normal": 0.8, "abnormal": 0.2}
    assert first.probabilities_b == {"abnormal": 0.6, "normal": 0.4}


def test_it_puts_both_versions_metrics_side_by_side_where_truth_exists(
    versions: Any, constructed: list[Any]
) -> None:
    a, b = versions

    diff = comparison.compare_versions(a, b, Recording.objects.all())

    # Nine recordings carry truth: 6 normal, 3 abnormal.
    assert diff.metrics_a["count"] == diff.metrics_b["count"] == 9
    assert diff.metrics_a["accuracy"] == pytest.approx(8 / 9)
    assert diff.metrics_b["accuracy"] == pytest.approx(7 / 9)
    assert diff.metrics_a["sensitivity"] == pytest.approx(2 / 3)
    assert diff.metrics_b["sensitivity"] == pytest.approx(1.0)
    assert diff.metrics_a["specificity"] == pytest.approx(1.0)
    assert diff.metrics_b["specificity"] == pytest.approx(4 / 6)


def test_it_diffs_over_the_api_within_the_callers_organisations(
    versions: Any, constructed: list[Any], researcher: Any, south: Any
) -> None:
    a, b = versions
    elsewhere = factories.RecordingFactory(batch=factories.BatchFactory(organisation=south, model_version=a))
    predict(elsewhere, a, "normal")
    predict(elsewhere, b, "abnormal")

    response = api_as(researcher).get("/api/v1/models/diff/", {"a": a.pk, "b": b.slug})

    assert response.status_code == 200
    body = response.json()
    assert (body["compared"], body["agreed"], body["changed"]) == (10, 6, 4)
    assert elsewhere.pk not in [change["recording_id"] for change in body["changes"]]


PASCAL = ["normal", "murmur", "extrahls", "extrastole", "artifact"]
# (truth, label by a binary version, label by a PASCAL version) for eleven recordings.
MAPPED_CASES = (
    [("abnormal", "abnormal", "murmur")] * 2
    + [("normal", "normal", "normal")] * 2
    + [("normal", "normal", "extrastole")]
    + [("", "abnormal", "normal")]
    + [("normal", "abnormal", "artifact")] * 2
    + [("artifact", "normal", "normal")]
    + [("extrahls", "normal", "extrahls")]
    + [("abnormal", "normal", "murmur")]
)


@pytest.fixture
def binary_and_pascal(north: Any) -> tuple[Any, Any]:
    binary = factories.ModelVersionFactory(
        name="screening", classes=["normal", "abnormal"], manifest={"positive_class": "abnormal"}
    )
    pascal = factories.ModelVersionFactory(name="pascal", classes=PASCAL)
    batch = factories.BatchFactory(organisation=north, model_version=binary)
    for index, (truth, label_binary, label_pascal) in enumerate(MAPPED_CASES):
        recording = factories.RecordingFactory(batch=batch, path=f"r{index:02}.wav", label=truth)
        predict(recording, binary, label_binary)
        predict(recording, pascal, label_pascal)
    return binary, pascal


def test_it_counts_a_multi_class_versions_agreement_through_the_binary_label_map(
    binary_and_pascal: tuple[Any, Any],
) -> None:
    binary, pascal = binary_and_pascal

    diff = comparison.compare_versions(binary, pascal, Recording.objects.all())

    # Two read as artifact are left out; murmur, extrahls and extrastole agree with abnormal.
    assert (diff.read_by_both, diff.compared, diff.agreed, diff.changed) == (11, 9, 5, 4)
    assert diff.label_map == {"version": pascal.slug, "map": "pascal-binary"}
    assert diff.matrix == {"abnormal": {"abnormal": 2, "normal": 1}, "normal": {"abnormal": 3, "normal": 3}}
    assert [(left.source, left.label, left.count) for left in diff.left_out] == [
        ("ground truth", "artifact", 1),
        (pascal.slug, "artifact", 2),
    ]
    assert [left.reason for left in diff.left_out] == [
        "1 recording left out of the figures against ground truth: truth artifact has no binary counterpart",
        "2 recordings left out: class artifact has no binary counterpart",
    ]
    # The changes keep each version's own label and probabilities.
    assert [(change.path, change.label_a, change.label_b) for change in diff.changes] == [
        ("r04.wav", "normal", "extrastole"),
        ("r05.wav", "abnormal", "normal"),
        ("r09.wav", "normal", "extrahls"),
        ("r10.wav", "normal", "murmur"),
    ]
    assert diff.changes[2].truth == "extrahls"


def test_it_grades_the_multi_class_version_in_the_binary_classes(binary_and_pascal: tuple[Any, Any]) -> None:
    binary, pascal = binary_and_pascal

    diff = comparison.compare_versions(binary, pascal, Recording.objects.all())

    # Seven with a binary truth: 4 abnormal (extrahls among them), 3 normal.
    assert diff.metrics_a["count"] == diff.metrics_b["count"] == 7
    assert diff.metrics_a["sensitivity"] == pytest.approx(2 / 4)
    assert diff.metrics_a["specificity"] == pytest.approx(1.0)
    assert diff.metrics_a["macc"] == pytest.approx(0.75)
    assert diff.metrics_a["accuracy"] == pytest.approx(5 / 7)
    assert diff.metrics_b["sensitivity"] == pytest.approx(1.0)
    assert diff.metrics_b["specificity"] == pytest.approx(2 / 3)
    assert diff.metrics_b["macc"] == pytest.approx(5 / 6)
    assert diff.metrics_b["accuracy"] == pytest.approx(6 / 7)
    assert diff.metrics_b["recall"] == {"abnormal": 1.0, "normal": pytest.approx(2 / 3)}


def test_it_reads_the_multi_class_version_through_the_map_when_it_is_version_a(
    binary_and_pascal: tuple[Any, Any], researcher: Any
) -> None:
    binary, pascal = binary_and_pascal

    response = api_as(researcher).get("/api/v1/models/diff/", {"a": pascal.slug, "b": binary.slug})

    assert response.status_code == 200
    body = response.json()
    assert (body["read_by_both"], body["compared"], body["agreed"]) == (11, 9, 5)
    assert body["label_map"] == {"version": pascal.slug, "map": "pascal-binary"}
    assert body["left_out"][1] == {
        "source": pascal.slug,
        "label": "artifact",
        "count": 2,
        "reason": "2 recordings left out: class artifact has no binary counterpart",
    }
    assert body["matrix"] == {
        "abnormal": {"abnormal": 2, "normal": 3},
        "normal": {"abnormal": 1, "normal": 3},
    }
    assert body["metrics"]["a"]["sensitivity"] == pytest.approx(1.0)
    assert body["metrics"]["b"]["sensitivity"] == pytest.approx(0.5)


def test_it_keeps_the_labels_of_a_multi_class_version_no_map_covers(north: Any) -> None:
    binary = factories.ModelVersionFactory(
        classes=["normal", "abnormal"], manifest={"positive_class": "abnormal"}
    )
    other = factories.ModelVersionFactory(name="other", classes=["normal", "murmur", "noise"])
    recording = factories.RecordingFactory(
        batch=factories.BatchFactory(organisation=north, model_version=binary), label="abnormal"
    )
    predict(recording, binary, "abnormal")
    predict(recording, other, "murmur")

    diff = comparison.compare_versions(binary, other, Recording.objects.all())

    assert diff.label_map is None and diff.left_out == []
    assert (diff.compared, diff.agreed) == (1, 0)
    assert diff.metrics_a["sensitivity"] == 1.0
    assert "sensitivity" not in diff.metrics_b


def _in_week(recordings: list[Any], start: dt.datetime) -> None:
    Recording.objects.filter(pk__in=[recording.pk for recording in recordings]).update(created_at=start)


def test_it_flags_a_week_whose_class_mix_moves_away_from_the_validation_baseline(north: Any) -> None:
    # Validation predicted 75% normal, 25% abnormal (column sums of the confusion matrix).
    metrics = {"validation": {"classes": ["normal", "abnormal"], "confusion_matrix": [[70, 5], [5, 20]]}}
    version = factories.ModelVersionFactory(classes=["normal", "abnormal"], metrics=metrics)
    batch = factories.BatchFactory(organisation=north, model_version=version)
    steady = [factories.RecordingFactory(batch=batch) for _ in range(24)]
    shifted = [factories.RecordingFactory(batch=batch) for _ in range(24)]
    for index, recording in enumerate(steady):
        predict(recording, version, "abnormal" if index % 4 == 0 else "normal")
    for index, recording in enumerate(shifted):
        predict(recording, version, "normal" if index % 4 == 0 else "abnormal")
    monday = timezone.now() - dt.timedelta(days=timezone.now().weekday() + 14)
    _in_week(steady, monday)
    _in_week(shifted, monday + dt.timedelta(days=7))

    found = drift.version_drift(version, Recording.objects.all())

    assert [week.count for week in found.weeks] == [24, 24]
    assert found.weeks[0].class_distance == pytest.approx(0.0)
    assert found.weeks[1].class_distance == pytest.approx(0.5)
    assert found.weeks[0].flags == [] and found.weeks[1].flags == ["classes"]
    assert found.flagged == [found.weeks[1].week]
    assert found.baseline.classes == {"abnormal": 0.25, "normal": 0.75}


def test_it_never_flags_a_week_with_too_few_recordings(north: Any, researcher: Any) -> None:
    metrics = {"validation": {"classes": ["normal", "abnormal"], "confusion_matrix": [[9, 0], [0, 1]]}}
    version = factories.ModelVersionFactory(classes=["normal", "abnormal"], metrics=metrics)
    batch = factories.BatchFactory(organisation=north, model_version=version)
    for _ in range(3):
        predict(factories.RecordingFactory(batch=batch), version, "abnormal")

    response = api_as(researcher).get(f"/api/v1/models/{version.pk}/drift/")

    assert response.status_code == 200
    [week] = response.json()["weeks"]
    assert week["class_distance"] == pytest.approx(0.9)
    assert week["flags"] == [] and response.json()["flagged_weeks"] == []
