"""Business logic shared by the pages, the API, the CLI and the tasks.

Views and tasks stay thin: they read a request or a message, call one function
here and shape the answer.
"""

from jobs.services.access import get_batch, get_recording, visible_batches, visible_recordings
from jobs.services.downloads import download_link
from jobs.services.lifecycle import cancel_batch, delete_batch
from jobs.services.progress import Progress, batch_progress
from jobs.services.results import batch_recordings
from jobs.services.uploads import UploadRejected, create_batch_from_upload

__all__ = [
    "Progress",
    "UploadRejected",
    "batch_progress",
    "batch_recordings",
    "cancel_batch",
    "create_batch_from_upload",
    "delete_batch",
    "download_link",
    "get_batch",
    "get_recording",
    "visible_batches",
    "visible_recordings",
]
