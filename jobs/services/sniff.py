"""What a file is, from its first bytes. A header check only: full decoding
happens in the analyse task, never in the web process."""

from ml.sniff import looks_like_audio

__all__ = ["HEAD_BYTES", "ZIP_MAGICS", "is_zip", "looks_like_audio"]

ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
HEAD_BYTES = 16


def is_zip(head: bytes) -> bool:
    return head.startswith(ZIP_MAGICS)
