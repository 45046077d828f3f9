"""Which members of an uploaded zip may become recordings (jobs.services.archive.plan)
and the labels file (parse_labels), from the central directory and bytes alone."""

import io
import stat
import warnings
import zipfile

import pytest
from pytest_django.fixtures import Settings

from jobs.services import archive
from jobs.services.archive import ArchiveRefused, parse_labels

WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(200)


def make_zip(
    *members: tuple[str, bytes] | zipfile.ZipInfo, data: bytes = WAV, encrypted: str = ""
) -> zipfile.ZipFile:
    """An archive in memory, opened for reading; a ZipInfo member gets DATA.
    The member named ENCRYPTED is marked encrypted in its headers, as a
    password-protected member is (zipfile writes no encrypted members)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about duplicate names
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out:
            for member in members:
                if isinstance(member, zipfile.ZipInfo):
                    out.writestr(member, data)
                else:
                    out.writestr(*member)
    if encrypted:
        buffer = io.BytesIO(mark_encrypted(buffer.getvalue(), encrypted))
    buffer.seek(0)
    return zipfile.ZipFile(buffer)


def mark_encrypted(data: bytes, name: str) -> bytes:
    """Set bit 0 of the general-purpose flags in NAME's local and central headers."""
    patched = bytearray(data)
    for signature, flags_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        start = data.index(signature)
        while not data[start + name_at :].startswith(name.encode()):
            start = data.index(signature, start + 1)
        patched[start + flags_at] |= 0x1
    return bytes(patched)


def accepted(result: archive.Plan) -> list[str]:
    return [archive.display_path(info, result.root) for info in result.accepted]


def rejected(result: archive.Plan) -> dict[str, str]:
    return {rejection.path: rejection.code for rejection in result.rejected}


def test_it_accepts_recordings_and_drops_a_zipped_folders_name() -> None:
    result = archive.plan(make_zip(("screening/a.wav", WAV), ("screening/site 2/b.wav", WAV)))

    assert result.root == "screening/"
    assert accepted(result) == ["a.wav", "site 2/b.wav"]
    assert result.rejected == [] and result.labels_member is None


def test_it_keeps_paths_whole_when_members_lie_in_several_folders() -> None:
    result = archive.plan(make_zip(("one/a.wav", WAV), ("two/b.wav", WAV)))

    assert result.root == ""
    assert accepted(result) == ["one/a.wav", "two/b.wav"]


def symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def test_it_names_the_reason_for_every_member_it_refuses(settings: Settings) -> None:
    settings.LUBDUB_MAX_MEMBER_BYTES = 4096
    result = archive.plan(
        make_zip(
            ("ok.wav", WAV),
            ("/etc/passwd.wav", WAV),
            ("C:/audio/c.wav", WAV),
            ("../outside.wav", WAV),
            symlink("link.wav"),
            ("__MACOSX/._ok.wav", WAV),
            (".hidden.wav", WAV),
            ("folder/.DS_Store", WAV),
            ("locked.wav", WAV),
            ("inner.zip", WAV),
            ("more.tar.gz", WAV),
            ("big.wav", WAV + bytes(8192)),
            ("empty.wav", b""),
            encrypted="locked.wav",
        )
    )

    assert accepted(result) == ["ok.wav"]
    assert rejected(result) == {
        "/etc/passwd.wav": "absolute_path",
        "C:/audio/c.wav": "absolute_path",
        "../outside.wav": "unsafe_path",
        "link.wav": "symlink",
        "__MACOSX/._ok.wav": "hidden_file",
        ".hidden.wav": "hidden_file",
        "folder/.DS_Store": "hidden_file",
        "locked.wav": "encrypted",
        "inner.zip": "nested_archive",
        "more.tar.gz": "nested_archive",
        "big.wav": "too_large",
        "empty.wav": "empty",
    }
    assert all(rejection.message for rejection in result.rejected)


def test_it_refuses_a_member_that_inflates_implausibly(settings: Settings) -> None:
    settings.LUBDUB_MAX_COMPRESSION_RATIO = 100
    zeros = bytes(2 * 1024 * 1024)  # deflates about 1000:1
    result = archive.plan(make_zip(("bomb.wav", zeros), ("small-zeros.wav", bytes(64 * 1024))))

    assert rejected(result) == {"bomb.wav": "zip_bomb"}
    # Under a megabyte a high ratio is harmless (short silent files compress well).
    assert accepted(result) == ["small-zeros.wav"]


def test_it_gives_every_member_with_a_repeated_path_a_row_of_its_own() -> None:
    result = archive.plan(make_zip(("a.wav", WAV), ("a.wav", WAV), ("a.wav", WAV), ("b.wav", WAV)))

    assert accepted(result) == ["a.wav", "b.wav"]
    assert [(rejection.path, rejection.code) for rejection in result.rejected] == [
        ("a.wav (copy 2)", "duplicate_name"),
        ("a.wav (copy 3)", "duplicate_name"),
    ]


def test_it_takes_the_shallowest_labels_file_and_treats_deeper_ones_as_members() -> None:
    for order in (1, -1):
        members = [("batch/site/labels.csv", b"path,label\n"), ("batch/labels.csv", b"path,label\n")]
        result = archive.plan(make_zip(("batch/a.wav", WAV), *members[::order]))

        assert result.labels_member is not None
        assert archive.display_path(result.labels_member, result.root) == "labels.csv"
        assert archive.labels_folder(result.labels_member, result.root) == ""
        assert sorted(accepted(result)) == ["a.wav", "site/labels.csv"]


def test_a_labels_file_in_a_folder_labels_paths_from_that_folder() -> None:
    result = archive.plan(make_zip(("one/a.wav", WAV), ("two/labels.csv", b"path,label\n")))

    assert result.labels_member is not None
    assert archive.labels_folder(result.labels_member, result.root) == "two/"


def test_it_refuses_the_whole_archive_over_the_member_count(settings: Settings) -> None:
    settings.LUBDUB_MAX_ARCHIVE_MEMBERS = 3
    folders_do_not_count = make_zip(
        zipfile.ZipInfo("dir/"), ("dir/a.wav", WAV), ("b.wav", WAV), ("c.wav", WAV)
    )
    assert len(archive.plan(folders_do_not_count).accepted) == 3

    with pytest.raises(ArchiveRefused) as refused:
        archive.plan(make_zip(*((f"{index}.wav", WAV) for index in range(4))))
    assert refused.value.code == "too_many_members"
    assert "4 files" in refused.value.message


def test_it_refuses_the_whole_archive_over_the_expanded_size(settings: Settings) -> None:
    settings.LUBDUB_MAX_UNCOMPRESSED_BYTES = 1000
    with pytest.raises(ArchiveRefused) as refused:
        archive.plan(make_zip(("a.wav", WAV + bytes(600)), ("b.wav", WAV + bytes(600))))
    assert refused.value.code == "zip_bomb"


# --- labels.csv ------------------------------------------------------------------


def test_it_reads_path_label_rows() -> None:
    data = "\ufeffPath , Label\n./a.wav,Normal\nsite/b.wav , abnormal \n\n , \nc.wav,x\n".encode()

    assert parse_labels(data) == {"a.wav": "normal", "site/b.wav": "abnormal", "c.wav": "x"}


def test_it_keeps_a_label_to_fifty_characters() -> None:
    assert parse_labels(b"path,label\na.wav," + b"y" * 80 + b"\n") == {"a.wav": "y" * 50}


def test_it_refuses_a_path_labelled_twice_and_names_the_line() -> None:
    data = b"path,label\na.wav,normal\nb.wav,normal\n./a.wav,abnormal\n"

    with pytest.raises(ValueError, match=r"line 4: 'a.wav' is labelled twice"):
        parse_labels(data)


def test_it_refuses_a_path_labelled_twice_with_the_same_label() -> None:
    with pytest.raises(ValueError, match="labelled twice"):
        parse_labels(b"path,label\na.wav,normal\na.wav,normal\n")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "must start with the header 'path,label'"),
        (b"file,class\na.wav,normal\n", "must start with the header 'path,label'"),
        (b"path,label\na.wav\n", "line 2: expected 'path,label'"),
        (b"path,label\na.wav,normal\nb.wav,normal,extra\n", "line 3: expected 'path,label'"),
        (b"path,label\n,normal\n", "line 2: expected 'path,label'"),
        (b"path,label\na.wav, \n", "line 2: expected 'path,label'"),
        (b"path,label\n\xff\xfe.wav,normal\n", "not UTF-8 text"),
    ],
)
def test_it_refuses_a_malformed_labels_file(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_labels(data)


def test_it_refuses_a_labels_file_over_its_size_limit() -> None:
    with pytest.raises(ValueError, match="larger than"):
        parse_labels(b"path,label\n" + b"a" * archive.MAX_LABELS_BYTES)
