"""Label maps: PASCAL classes read as normal/abnormal, and a module light enough for the web."""

import subprocess
import sys

from ml import datasets, labels


def test_it_reads_pascal_classes_as_normal_or_abnormal_and_drops_artifact() -> None:
    reading = labels.binary_reading(["normal", "murmur", "extrahls", "extrastole", "artifact"])

    assert reading is not None and reading.map_name == "pascal-binary"
    assert [reading.to_binary(label) for label in ("normal", "murmur", "extrahls", "extrastole")] == [
        "normal",
        "abnormal",
        "abnormal",
        "abnormal",
    ]
    assert reading.to_binary("artifact") is None
    # A binary ground truth stays as it is; a label the map does not know has no counterpart.
    assert (reading.to_binary("abnormal"), reading.to_binary("noise")) == ("abnormal", None)


def test_it_finds_no_reading_for_a_binary_model_or_classes_no_map_covers() -> None:
    assert labels.binary_reading(["abnormal", "normal"]) is None
    assert labels.binary_reading(["normal", "murmur", "noise"]) is None
    assert labels.is_binary(["abnormal", "normal"]) and not labels.is_binary(["normal", "murmur"])


def test_it_keeps_one_definition_of_the_maps_for_datasets() -> None:
    assert datasets.LABEL_MAPS is labels.LABEL_MAPS


def test_the_label_maps_import_nothing_numeric() -> None:
    """The web process reads a multi-class model's labels through them without numpy."""
    code = (
        "import sys, ml.labels;"
        "print(sorted(name for name in ('numpy', 'scipy', 'soundfile', 'django') if name in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "[]"
