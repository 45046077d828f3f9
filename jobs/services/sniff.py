"""What a file is, from its first bytes. A header check only: full decoding
happens in the analyse task, never in the web process."""

ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
AUDIO_MAGICS = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"FORM", b".snd", b"ID3", b"caff")
HEAD_BYTES = 16


def is_zip(head: bytes) -> bool:
    return head.startswith(ZIP_MAGICS)


def looks_like_audio(head: bytes) -> bool:
    mpeg_frame = len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0
    return head.startswith(AUDIO_MAGICS) or mpeg_frame
