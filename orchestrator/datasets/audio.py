"""Audio decoding, resampling and clip-length handling, shared by every reader.

Every source ends in the same call: soundfile decodes a path, a file object (local, S3 or HF
through fsspec) or raw bytes (a parquet audio column) into mono float32; an optional
``[start, end)`` window is read without decoding the whole file (long soundscapes, Xeno-canto
recordings). Decoding problems raise :class:`AudioError` so extraction can skip and report the
clip instead of dying.
"""

from __future__ import annotations

import io
import logging
from math import gcd
from typing import IO, Any

import numpy as np
import soundfile as sf

log = logging.getLogger(__name__)


class AudioError(RuntimeError):
    """A clip that is corrupt, empty, truncated or unreadable; ``str()`` says which and why."""


def decode(
    src: str | bytes | IO[bytes] | Any,
    start: float | None = None,
    end: float | None = None,
    name: str = "",
) -> tuple[np.ndarray, int]:
    """Decode ``src`` to a mono float32 waveform and its sample rate.

    ``start``/``end`` are seconds; ``end`` past the file's end is clipped. Raises
    :class:`AudioError` for anything soundfile cannot read or that holds no samples.
    """
    label = name or (src if isinstance(src, str) else type(src).__name__)
    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise AudioError(f"{label}: empty audio (0 bytes)")
        src = io.BytesIO(bytes(src))
    try:
        with sf.SoundFile(src) as f:
            rate = int(f.samplerate)
            first = max(0, round((start or 0.0) * rate))
            if first:
                f.seek(min(first, f.frames))
            frames = -1 if end is None else max(0, round(end * rate) - first)
            data = f.read(frames=frames, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError, EOFError) as err:
        raise AudioError(f"{label}: unreadable audio ({type(err).__name__}: {err})") from err
    if data.size == 0:
        raise AudioError(f"{label}: no samples (empty or truncated file, or window past its end)")
    wave = data.mean(axis=1, dtype=np.float32)
    if not np.all(np.isfinite(wave)):
        raise AudioError(f"{label}: non-finite samples (corrupt file)")
    return np.ascontiguousarray(wave, dtype=np.float32), rate


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling (scipy) from ``rate`` to ``target`` Hz; identity when equal."""
    if rate == target:
        return wave
    from scipy.signal import resample_poly

    g = gcd(int(rate), int(target))
    out = resample_poly(wave, target // g, rate // g).astype(np.float32)
    return out


def fit_length(wave: np.ndarray, samples: int) -> tuple[np.ndarray, int]:
    """Crop to the first ``samples`` or zero-pad to it; returns (wave, valid length)."""
    n = int(wave.shape[0])
    if n >= samples:
        return wave[:samples], samples
    out = np.zeros(samples, dtype=np.float32)
    out[:n] = wave
    return out, n


def write_audio(path: Any, wave: np.ndarray, rate: int, fmt: str = "FLAC") -> None:
    """Write mono audio as 16-bit FLAC (or WAV); ``path`` may be a file object."""
    sf.write(path, np.clip(wave, -1.0, 1.0), rate, format=fmt, subtype="PCM_16")
