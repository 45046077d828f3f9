"""Is this process's media folder the web's? Filesystem storage works on one host only.

The web marks its LUBDUB_MEDIA_ROOT (``manage.py prepare_storage``, which
``make up`` runs before it starts any process): a marker file with a random id
in the folder, and the same id in the database. A worker on filesystem
storage checks at start-up that the marker in its own folder carries the
database's id. On another machine, or pointed at another folder, it would
otherwise start, take tasks and fail every recording with ``missing_audio``,
since the uploads it is asked to read are on the web's disk.

S3 storage is shared by every host and needs none of this.
"""

import json
import os
import socket
import uuid
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from jobs import storage
from jobs.models import MediaFolder

MARKER_NAME = ".lubdub-media"
ROW_ID = 1


class MediaFolderMismatch(Exception):
    """This process's media folder does not hold the web's uploads."""


def marker_path() -> Path:
    return Path(settings.MEDIA_ROOT) / MARKER_NAME


def mark() -> MediaFolder | None:
    """Record this process's media folder as the web's; None on S3 storage.

    A folder marked before keeps its id, so re-running it (every `make up`)
    leaves running workers valid, and a database created afresh adopts the
    folder that holds the files.
    """
    if storage.uses_s3():
        return None
    path = marker_path()
    marker = _read_marker(path) or uuid.uuid4()
    folder, _ = MediaFolder.objects.update_or_create(
        pk=ROW_ID,
        defaults={
            "marker": marker,
            "path": str(path.parent),
            "hostname": socket.gethostname(),
            "marked_at": timezone.now(),
        },
    )
    _write_marker(path, folder)
    return folder


def check() -> None:
    """Raise MediaFolderMismatch unless storage is S3 or the media folder is the web's."""
    if storage.uses_s3():
        return
    path = marker_path()
    folder = MediaFolder.objects.filter(pk=ROW_ID).first()
    if folder is None:
        raise MediaFolderMismatch(
            f"filesystem storage: no web has marked its media folder yet, so {path.parent} cannot be"
            " checked. Run `manage.py prepare_storage` where the web runs (make up does), then start"
            " the worker again."
        )
    found = _read_marker(path)
    if found == folder.marker:
        return
    what = "has no marker" if found is None else f"has the marker of another folder ({found})"
    raise MediaFolderMismatch(
        f"filesystem storage: LUBDUB_MEDIA_ROOT={path.parent} {what}; the web's uploads are in"
        f" {folder.path} on {folder.hostname} (marker {folder.marker}). Filesystem storage works on"
        " one host only: run this worker there with the same LUBDUB_MEDIA_ROOT, or give every"
        " process S3-compatible storage (S3_ENDPOINT_URL, S3_BUCKET)."
    )


def _read_marker(path: Path) -> uuid.UUID | None:
    try:
        return uuid.UUID(json.loads(path.read_text())["marker"])
    except FileNotFoundError:
        return None
    except OSError as exc:
        # Unreadable (permissions, a folder in its place): the folder cannot be shown to be the web's.
        raise MediaFolderMismatch(f"{path} cannot be read ({exc})") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MediaFolderMismatch(f"{path} is not a LubDub media marker ({exc}); remove it") from exc


def _write_marker(path: Path, folder: MediaFolder) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {
        "marker": str(folder.marker),
        "hostname": folder.hostname,
        "marked_at": folder.marked_at.isoformat(),
    }
    # Written aside and renamed: a worker starting meanwhile reads the old marker or the new one.
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(content) + "\n")
    partial.replace(path)
