"""The body of an upload: one file as it is, or several files and folders as a zip.

The zip is stored (not compressed) and produced while it is sent, nothing
written to disk first. Django reads an upload by its Content-Length, so the
length must be known before the first byte: zipstream-ng counts it from the
files' sizes, without building the archive.
"""

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from tqdm import tqdm
from zipstream import ZipStream

from lubdub_client.errors import CliError
from lubdub_client.server import BLOCK

CHANGED = "a file changed while it was being uploaded; try again"

Entries = Sequence[tuple[str, Path]]


def zip_entries(paths: Sequence[Path]) -> list[tuple[str, Path]]:
    """(name in archive, file) pairs: a folder's files keep their path inside it."""
    entries: list[tuple[str, Path]] = []
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(path)
                hidden = any(part.startswith(".") for part in relative.parts)
                if child.is_file() and not child.is_symlink() and not hidden:
                    entries.append((relative.as_posix(), child))
        elif path.is_file():
            entries.append((path.name, path))
        else:
            raise CliError(f"{path}: no such file or folder")
    if not entries:
        raise CliError("nothing to upload: the folders are empty")
    return entries


def zip_archive(entries: Entries) -> ZipStream:
    """The stored zip of the entries, not yet produced; len() is its size in bytes."""
    archive = ZipStream(sized=True)  # sized: stored only, which is what audio wants anyway
    for name, path in entries:
        archive.add_path(path, name, recurse=False)
    return archive


def zip_stream(entries: Entries) -> Iterator[bytes]:
    """The zip's bytes, block by block; a fresh archive each time, so a retry can send it again."""
    try:
        yield from zip_archive(entries)
    except RuntimeError as exc:  # zipstream-ng: a file's size is no longer the one counted
        raise CliError(CHANGED) from exc


def file_stream(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while block := source.read(BLOCK):
            yield block


class MultipartBody:
    """A multipart/form-data body of known length, streamed from a generator."""

    def __init__(
        self,
        fields: dict[str, str],
        filename: str,
        content_type: str,
        parts: Callable[[], Iterable[bytes]],
        size: int,
    ) -> None:
        self.boundary = uuid.uuid4().hex
        head = b"".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in fields.items()
            if value
        )
        head += (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        self._head, self._tail = head, f"\r\n--{self.boundary}--\r\n".encode()
        self._parts, self.file_size = parts, size
        self.progress: tqdm | None = None

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self._head) + self.file_size + len(self._tail)

    def __iter__(self) -> Iterator[bytes]:
        if self.progress is not None:
            self.progress.reset()  # a retry sends the whole body again
        yield self._head
        sent = 0
        for block in self._parts():
            sent += len(block)
            if sent > self.file_size:  # never more than the Content-Length promised
                raise CliError(CHANGED)
            if self.progress is not None:
                self.progress.update(len(block))
            yield block
        if sent != self.file_size:
            raise CliError(CHANGED)
        yield self._tail


def zip_body(fields: dict[str, str], filename: str, entries: Entries) -> MultipartBody:
    """An upload of the entries as one zip named `filename`."""
    for _name, path in entries:
        # An unreadable file fails here, by name; mid-upload it would look like a dropped connection.
        path.open("rb").close()
    size = len(zip_archive(entries))
    return MultipartBody(fields, filename, "application/zip", lambda: zip_stream(entries), size)


def upload_body(paths: Sequence[Path], fields: dict[str, str]) -> MultipartBody:
    """One file as it is (a zip or a recording), anything else zipped."""
    if len(paths) == 1 and paths[0].is_file():
        path = paths[0]
        path.open("rb").close()  # unreadable: fails here, by name, as in zip_body
        kind = "application/zip" if path.suffix.lower() == ".zip" else "application/octet-stream"
        return MultipartBody(fields, path.name, kind, lambda: file_stream(path), path.stat().st_size)
    name = (paths[0].resolve().name if len(paths) == 1 else "recordings") + ".zip"
    return zip_body(fields, name, zip_entries(paths))
