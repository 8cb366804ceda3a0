"""Perceptual frame hashes (pHash: the signs of a 32×32 DCT's low frequencies) and near-duplicate search.

A video's hash is one 64-bit pHash per second of video (up to 16), as hex. Two videos are near
duplicates when their aligned frames differ, on average, by at most `NEAR_DUPLICATE_BITS` bits: a
re-encode or rescale moves a few bits, while unrelated frames differ in about 32.
"""

from __future__ import annotations

import numpy as np

NEAR_DUPLICATE_BITS = 4.0
_N = 32
_DCT = np.cos(np.pi * (2 * np.arange(_N)[None, :] + 1) * np.arange(_N)[:, None] / (2 * _N))


def frame_hashes(frames: np.ndarray) -> str:
    """Hex pHashes of grey frames (F, 32, 32), 16 hex digits per frame."""
    coefficients = _DCT @ frames.astype(np.float64) @ _DCT.T
    low = coefficients[:, :8, :8].reshape(len(frames), 64)
    bits = low > np.median(low[:, 1:], axis=1, keepdims=True)  # the DC term would dominate the median
    words = np.packbits(bits, axis=1).view(">u8").ravel()
    return "".join(f"{int(word):016x}" for word in words)


def _words(hashes: str) -> np.ndarray:
    return np.array([int(hashes[i : i + 16], 16) for i in range(0, len(hashes), 16)], dtype=np.uint64)


def hash_distance(a: str, b: str) -> float:
    """Mean Hamming distance of the aligned frames of two videos (over the shorter one)."""
    x, y = _words(a), _words(b)
    n = min(len(x), len(y))
    if n == 0:
        return 64.0
    return float(np.unpackbits((x[:n] ^ y[:n]).view(np.uint8)).sum() / n)


def near_duplicate_pairs(
    hashes: dict[str, str], threshold: float = NEAR_DUPLICATE_BITS
) -> list[tuple[str, str]]:
    """Pairs of ids whose videos are near duplicates, compared on their first frame hash in bulk first."""
    ids = [key for key, value in hashes.items() if value]
    if len(ids) < 2:
        return []
    first = np.array([int(hashes[key][:16], 16) for key in ids], dtype=np.uint64)
    pairs = []
    for i in range(len(ids) - 1):
        differing = np.unpackbits((first[i + 1 :] ^ first[i]).view(np.uint8).reshape(-1, 8), axis=1).sum(
            axis=1
        )
        # a near duplicate's first frames are close too; the full comparison runs only on those
        for j in np.flatnonzero(differing <= 2 * threshold) + i + 1:
            if hash_distance(hashes[ids[i]], hashes[ids[j]]) <= threshold:
                pairs.append((ids[i], ids[j]))
    return pairs
