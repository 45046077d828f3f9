"""Whether a file's first bytes look like audio: one rule for the web process's
header check (``jobs.services.sniff``) and the decoder (``ml.audio``). Light: no
numpy, no libsndfile."""

# WAV (RIFF, RIFX, RF64), FLAC, Ogg, AIFF, Sun/NeXT, MP3 with an ID3 tag, Core Audio.
AUDIO_MAGICS = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"FORM", b".snd", b"ID3", b"caff")


def is_mpeg_frame(head: bytes) -> bool:
    """An MPEG audio frame sync (11 set bits): an MP3 without an ID3 tag."""
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0


def looks_like_audio(head: bytes) -> bool:
    return head.startswith(AUDIO_MAGICS) or is_mpeg_frame(head)
