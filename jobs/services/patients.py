"""Patients: which recordings of a batch belong to one person, and one verdict for each.

A recording's patient and auscultation location come from labels.csv's patient and
location columns or, failing those, from a file named as CirCor names them,
``<patient>_<location>[_<n>].<ext>`` (``50782_MV_1.wav``).

A patient's verdict reads their recordings as a clinician would: a recording counts
with its latest review's label when a clinician reviewed it, else with the model's
decision. A screening model's positive class at any location makes the patient
positive (a murmur heard at one valve is a murmur); otherwise an uncertain recording
makes the patient uncertain, recordings all to re-record make it re-record, and
negatives everywhere make it negative. For a model without a positive class, the
class every usable recording agrees on, else uncertain.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from jobs.models import Batch
from jobs.services import archive, reviews, verdicts
from jobs.services.results import batch_recordings

UNCERTAIN = "uncertain"
PENDING = "pending"
NAMED = re.compile(
    r"^(?P<patient>[a-z]{0,8}\d+)_(?P<location>" + "|".join(archive.LOCATIONS) + r")(?:_\d+)?$",
    re.IGNORECASE,
)


def facts_from_name(path: str) -> tuple[str, str]:
    """The patient and location a file's name gives (``("", "")`` when it gives none)."""
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    found = NAMED.match(stem)
    if found is None:
        return "", ""
    return found["patient"][: archive.PATIENT_MAX_LENGTH], archive.canonical_location(found["location"])


def member_facts(path: str, listed: archive.MemberFacts | None) -> archive.MemberFacts:
    """labels.csv's facts of a file, with the patient and location its name gives where it gives none."""
    listed = listed or archive.MemberFacts()
    if listed.patient_id and listed.location:
        return listed
    patient, location = facts_from_name(path)
    return archive.MemberFacts(
        label=listed.label, patient_id=listed.patient_id or patient, location=listed.location or location
    )


@dataclass(frozen=True)
class Reading:
    """One recording of a patient as the verdict counts it."""

    recording_id: int
    path: str
    location: str
    outcome: str  # a class, uncertain, re-record, or pending (not analysed yet)
    reviewed: bool  # the outcome is a clinician's review, not the model's decision


@dataclass(frozen=True)
class PatientVerdict:
    patient_id: str
    verdict: str
    reason: str
    readings: list[Reading] = field(default_factory=list)

    @property
    def locations(self) -> list[str]:
        return sorted({reading.location for reading in self.readings if reading.location})


def patient_count(batch: Batch) -> int:
    """How many patients the batch's recordings name."""
    return batch_recordings(batch).exclude(patient_id="").values("patient_id").distinct().count()


def patient_verdicts(batch: Batch, *, patient_id: str = "") -> list[PatientVerdict]:
    """Every patient of the batch (or the one named), by patient id, with their verdict."""
    rows = batch_recordings(batch).exclude(patient_id="")
    if patient_id:
        rows = rows.filter(patient_id=patient_id)
    rule = verdicts.model_rule(batch.model_version)
    by_patient: dict[str, list[Reading]] = {}
    for row in rows.order_by("patient_id", "location", "path"):
        by_patient.setdefault(row.patient_id, []).append(_reading(row))
    return [
        PatientVerdict(patient, *decide(readings, positive=rule.positive), readings=readings)
        for patient, readings in by_patient.items()
    ]


def _reading(row: Any) -> Reading:
    review = reviews.row_review(row)
    shown = verdicts.for_row(row)
    if review is not None:
        outcome, reviewed = review.label, True
    elif shown is not None and shown.outcome:
        outcome, reviewed = shown.outcome, False
    else:
        # Not analysed yet, or failed: a failed recording is one to record again.
        outcome = verdicts.RE_RECORD if row.file_status in ("failed", "rejected") else PENDING
        reviewed = False
    return Reading(row.pk, row.path, row.location, outcome, reviewed)


def decide(readings: Iterable[Reading], *, positive: str | None) -> tuple[str, str]:
    """A patient's verdict and why, from their recordings' outcomes (see the module docstring)."""
    readings = list(readings)
    at = _locations_by_outcome(readings)
    waiting = len(at.get(PENDING, []))
    if positive is not None and positive in at:
        return positive, f"{positive} at {_places(at[positive])}"
    if waiting:
        return (
            PENDING,
            f"{waiting} of {len(readings)} recording{'s' if len(readings) != 1 else ''} not analysed yet",
        )
    if UNCERTAIN in at:
        return UNCERTAIN, f"uncertain at {_places(at[UNCERTAIN])}: review or re-record"
    classes = set(at) - {verdicts.RE_RECORD}
    if not classes:
        return verdicts.RE_RECORD, "no usable recording: re-record"
    if len(classes) > 1:
        parts = "; ".join(f"{name} at {_places(at[name])}" for name in sorted(classes))
        return UNCERTAIN, f"the recordings disagree ({parts})"
    (only,) = classes
    reason = f"{only} at every usable location"
    if verdicts.RE_RECORD in at:
        reason += f"; re-record {_places(at[verdicts.RE_RECORD])}"
    return only, reason


def _locations_by_outcome(readings: list[Reading]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for reading in readings:
        found.setdefault(reading.outcome, []).append(reading.location or reading.path.rsplit("/", 1)[-1])
    return found


def _places(names: list[str]) -> str:
    return ", ".join(dict.fromkeys(names))
