"""Which members of an uploaded zip may become recordings, and why the others may not.

Checks use the central directory only (names, flags, declared sizes), so a zip
bomb is refused before a byte of it is inflated; reading later stops at the
declared size, which zipfile enforces.
"""

import csv
import io
import stat
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import IO

from django.conf import settings

from jobs.services.refusals import Refused

LABELS_FILE = "labels.csv"
MAX_LABELS_BYTES = 8 * 1024 * 1024
BOMB_MIN_BYTES = 1024 * 1024  # tiny members compress absurdly well and are harmless
# A member's local header: signature, versions, flags, method, time, date, CRC,
# sizes, then the lengths of the name and of the extra field that precede the data.
LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
LOCAL_SIGNATURE = b"PK\x03\x04"


class ArchiveRefused(Refused):
    """The archive as a whole cannot be used; the batch fails with this reason."""


@dataclass(frozen=True)
class Rejection:
    path: str
    code: str
    message: str


@dataclass
class Plan:
    """The outcome of reading the central directory."""

    accepted: list[zipfile.ZipInfo] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    labels_member: zipfile.ZipInfo | None = None
    root: str = ""


def plan(archive: zipfile.ZipFile) -> Plan:
    members = [info for info in archive.infolist() if not info.is_dir()]
    _check_totals(members)
    result = Plan(root=_common_root(members))
    seen: set[str] = set()
    for info in members:
        path = _display_path(info.filename, result.root)
        reason = _member_problem(info, path, seen)
        if reason and reason[0] == "duplicate_name":
            path = _unique(path, seen)  # each member keeps a row of its own
        seen.add(path)
        if reason:
            result.rejected.append(Rejection(path, *reason))
        elif path.rsplit("/", 1)[-1] == LABELS_FILE and _shallower(path, result):
            if result.labels_member is not None:
                result.accepted.append(result.labels_member)
            result.labels_member = info
        else:
            result.accepted.append(info)
    return result


def _unique(path: str, seen: set[str]) -> str:
    number = 2
    while f"{path} (copy {number})" in seen:
        number += 1
    return f"{path} (copy {number})"


def _shallower(path: str, result: Plan) -> bool:
    if result.labels_member is None:
        return True
    current = _display_path(result.labels_member.filename, result.root)
    return path.count("/") < current.count("/")


def labels_folder(info: zipfile.ZipInfo, root: str) -> str:
    """Paths in labels.csv are relative to the folder that holds it."""
    path = _display_path(info.filename, root)
    return path.rsplit("/", 1)[0] + "/" if "/" in path else ""


def display_path(info: zipfile.ZipInfo, root: str) -> str:
    return _display_path(info.filename, root)


def _check_totals(members: list[zipfile.ZipInfo]) -> None:
    if len(members) > settings.LUBDUB_MAX_ARCHIVE_MEMBERS:
        raise ArchiveRefused(
            "too_many_members",
            f"The archive holds {len(members)} files; the limit is {settings.LUBDUB_MAX_ARCHIVE_MEMBERS}.",
        )
    total = sum(info.file_size for info in members)
    if total > settings.LUBDUB_MAX_UNCOMPRESSED_BYTES:
        raise ArchiveRefused(
            "zip_bomb",
            f"The archive would expand to {total} bytes; the limit is "
            f"{settings.LUBDUB_MAX_UNCOMPRESSED_BYTES}.",
        )


def _member_problem(info: zipfile.ZipInfo, path: str, seen: set[str]) -> tuple[str, str] | None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute_path", "Absolute paths are not allowed inside an archive."
    if ".." in parts:
        return "unsafe_path", "The path climbs out of the archive ('..')."
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symlink", "Symbolic links are not followed."
    if parts and parts[0] == "__MACOSX":
        return "hidden_file", "macOS resource data (__MACOSX), not a recording."
    if any(part.startswith(".") for part in parts):
        return "hidden_file", "Hidden files (names starting with '.') are skipped."
    if path in seen:
        return "duplicate_name", "Another member of the archive has the same path."
    if info.flag_bits & 0x1:
        return "encrypted", "The member is encrypted; upload archives without a password."
    if name.lower().endswith((".zip", ".7z", ".rar", ".tar", ".gz", ".tgz")):
        return "nested_archive", "Archives inside archives are not opened; upload them separately."
    if info.file_size > settings.LUBDUB_MAX_MEMBER_BYTES:
        return "too_large", f"{info.file_size} bytes, over the {settings.LUBDUB_MAX_MEMBER_BYTES}-byte limit."
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > BOMB_MIN_BYTES and ratio > settings.LUBDUB_MAX_COMPRESSION_RATIO:
        return "zip_bomb", f"Compression ratio {ratio:.0f}:1 is implausible for audio."
    if info.file_size == 0:
        return "empty", "The file is empty (0 bytes)."
    return None


def _common_root(members: list[zipfile.ZipInfo]) -> str:
    """A single top folder that every member sits in (a zipped folder) is dropped from paths."""
    safe = [info.filename for info in members if not _unsafe_name(info.filename)]
    tops = {name.split("/", 1)[0] for name in safe if "/" in name}
    loose = [name for name in safe if "/" not in name]
    if len(tops) == 1 and not loose:
        top = tops.pop()
        if top not in ("..", "") and not top.startswith("."):
            return top + "/"
    return ""


def _unsafe_name(name: str) -> bool:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts


def _display_path(name: str, root: str) -> str:
    return name[len(root) :] if root and name.startswith(root) else name


@dataclass(frozen=True)
class Location:
    """Where a member's bytes lie in the archive, as they are stored (compressed or not)."""

    offset: int
    length: int
    compression: int


def member_location(archive: IO[bytes], info: zipfile.ZipInfo) -> Location:
    """The member's data offset (after its local header), stored length and method.

    The central directory gives the header's offset; the local header's own
    name and extra lengths (which may differ from the central copy) give where
    the data starts. Raises zipfile.BadZipFile on a header that is not one.
    """
    archive.seek(info.header_offset)
    header = archive.read(LOCAL_HEADER.size)
    if len(header) != LOCAL_HEADER.size:
        raise zipfile.BadZipFile(f"truncated local header for {info.filename!r}")
    fields = LOCAL_HEADER.unpack(header)
    if fields[0] != LOCAL_SIGNATURE:
        raise zipfile.BadZipFile(f"bad local header signature for {info.filename!r}")
    name_length, extra_length = fields[10], fields[11]
    offset = info.header_offset + LOCAL_HEADER.size + name_length + extra_length
    return Location(offset=offset, length=info.compress_size, compression=info.compress_type)


PATIENT_COLUMNS = ("patient", "patient_id", "subject", "subject_id")
LOCATION_COLUMNS = ("location", "auscultation_location")
PATIENT_MAX_LENGTH, LOCATION_MAX_LENGTH = 100, 20
# CirCor's auscultation locations, spelled as it spells them whatever case a file uses.
LOCATIONS = {name.lower(): name for name in ("AV", "PV", "TV", "MV", "Phc")}


@dataclass(frozen=True)
class MemberFacts:
    """What labels.csv says of one file: its ground truth, patient and auscultation location."""

    label: str = ""
    patient_id: str = ""
    location: str = ""


def canonical_location(value: str) -> str:
    value = value.strip()
    return LOCATIONS.get(value.lower(), value)[:LOCATION_MAX_LENGTH]


def parse_labels(data: bytes) -> dict[str, str]:
    """`path,label` rows: the ground truth of each labelled path (see parse_manifest)."""
    return {path: facts.label for path, facts in parse_manifest(data).items() if facts.label}


def parse_manifest(data: bytes) -> dict[str, MemberFacts]:
    """labels.csv: a `path,label` header, optionally followed by a patient column (`patient`,
    `patient_id`, `subject` or `subject_id`) and a `location` column; raises ValueError naming
    the first bad line. With either of those columns a row's label may be blank (not known)."""
    if len(data) > MAX_LABELS_BYTES:
        raise ValueError(f"labels.csv is larger than {MAX_LABELS_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError("labels.csv is not UTF-8 text") from exc
    reader = csv.reader(io.StringIO(text))
    header = [cell.strip().lower() for cell in next(reader, [])]
    if header[:2] != ["path", "label"]:
        raise ValueError("labels.csv must start with the header 'path,label'")
    patient_at, location_at = _extra_columns(header)
    expected = ",".join(header)
    manifest: dict[str, MemberFacts] = {}
    for line_number, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        label_needed = patient_at is None and location_at is None
        if len(row) != len(header) or not row[0].strip() or (label_needed and not row[1].strip()):
            raise ValueError(f"labels.csv line {line_number}: expected '{expected}', got {row!r}")
        path = row[0].strip().removeprefix("./")
        if path in manifest:
            raise ValueError(f"labels.csv line {line_number}: {path!r} is labelled twice")
        manifest[path] = MemberFacts(
            label=row[1].strip().lower()[:50],
            patient_id="" if patient_at is None else row[patient_at].strip()[:PATIENT_MAX_LENGTH],
            location="" if location_at is None else canonical_location(row[location_at]),
        )
    return manifest


def _extra_columns(header: list[str]) -> tuple[int | None, int | None]:
    """Where the patient and location columns are; any other column is refused, so a
    misspelt one is not silently ignored."""
    patient_at = location_at = None
    for index, name in enumerate(header[2:], start=2):
        if name in PATIENT_COLUMNS and patient_at is None:
            patient_at = index
        elif name in LOCATION_COLUMNS and location_at is None:
            location_at = index
        else:
            raise ValueError(
                f"labels.csv has an unknown or repeated column {name!r}: after 'path,label' it may "
                "have one patient column (patient, patient_id, subject, subject_id) and one location column"
            )
    return patient_at, location_at
