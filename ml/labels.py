"""Label maps between class sets: dataset labels to the classes a model learns, and a
multi-class model's classes to screening's normal/abnormal.

Standard library only: training maps dataset labels with these (``ml.datasets``),
and the web process reads a multi-class model's labels in a binary model's classes
through the same maps when it compares the two (``jobs.services.comparison``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# The classes of a screening (binary) model.
BINARY_CLASSES = ("normal", "abnormal")
# PASCAL 2011 to screening classes; artifact is a quality problem, not a diagnosis.
LABEL_MAPS: dict[str, dict[str, str | None]] = {
    "identity": {},
    "pascal-binary": {
        "normal": "normal",
        "murmur": "abnormal",
        "extrastole": "abnormal",
        "extrahls": "abnormal",
        "artifact": None,
    },
}


@dataclass(frozen=True)
class BinaryReading:
    """How a multi-class model's labels read as normal/abnormal: the map's name and its classes."""

    map_name: str
    classes: Mapping[str, str | None]

    def to_binary(self, label: str) -> str | None:
        """`label` as normal/abnormal; None where the map drops it (artifact) or does not know it.

        Labels that already are binary classes (a binary ground truth) stay as they are.
        """
        if label in self.classes:
            return self.classes[label]
        return label if label in BINARY_CLASSES else None


def is_binary(classes: Sequence[str]) -> bool:
    """Whether `classes` are screening's two, in any order."""
    return sorted(classes) == sorted(BINARY_CLASSES)


def binary_reading(classes: Sequence[str]) -> BinaryReading | None:
    """The map that reads a model with these (multi-class) classes as normal/abnormal.

    The first map, by name, that names every one of the classes and maps them to
    binary classes only (or drops them); None for a binary model and for classes
    no map covers.
    """
    if is_binary(classes):
        return None
    for name, mapping in sorted(LABEL_MAPS.items()):
        targets = {target for target in mapping.values() if target is not None}
        if mapping and set(classes) <= mapping.keys() and targets <= set(BINARY_CLASSES):
            return BinaryReading(map_name=name, classes={label: mapping[label] for label in classes})
    return None
