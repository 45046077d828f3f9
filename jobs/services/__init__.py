"""Business logic shared by the pages, the API, the CLI and the tasks.

Views and tasks stay thin: they read a request or a message, call one function
here and shape the answer. Import the module a function lives in
(``from jobs.services import access``); importing one service loads only what
that service needs.
"""

import importlib
from typing import Any

# Names the batch and recording pages still reach as ``services.<name>``: loaded
# on first use, so that importing any one service does not import them all.
_MOVED = {
    "Progress": "progress",
    "UploadRejected": "uploads",
    "batch_progress": "progress",
    "batch_recordings": "results",
    "cancel_batch": "lifecycle",
    "create_batch_from_upload": "uploads",
    "delete_batch": "lifecycle",
    "download_link": "downloads",
    "get_batch": "access",
    "get_recording": "access",
    "visible_batches": "access",
    "visible_recordings": "access",
}


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MOVED[name]}"), name)
