"""Perceptual frame hashes (pHash: the signs of a 32×32 DCT's low frequencies) and near-duplicate search.

A video's hash is one 64-bit pHash per second of video (up to 16), as hex. Two videos are near
duplicates when their first frames differ by at most `2 * NEAR_DUPLICATE_BITS` bits and their aligned
frames differ, on average, by at most `NEAR_DUPLICATE_BITS` bits (`hash_distance`): a re-encode or
rescale moves a few bits, while unrelated frames differ in about 32.

The search is sub-quadratic and exact. The first-frame bound k makes the candidates: each distinct first
word is cut into m chunks, so a pair within k bits has some chunk within r = k // m bits (pigeonhole);
two chunks are within r bits exactly when their balls of radius ceil(r / 2) share a value, so every word
lists its chunks' ball values and the words sharing a value become candidates (m is chosen for the fewest
listed values and collisions; for k = 8 that is 3 chunks of 21-22 bits, 23 values each). Candidates are
then held to the exact rule, vectorised, in batches of bounded size.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterator
from itertools import combinations

import numpy as np

from tkds import ids as tkds_ids
from tkds.errors import TkdsError

NEAR_DUPLICATE_BITS = 4.0
_N = 32
_DCT = np.cos(np.pi * (2 * np.arange(_N)[None, :] + 1) * np.arange(_N)[:, None] / (2 * _N))
_BATCH = 1 << 20  # candidate pairs held at once: bounds the search's memory whatever the input
_HEX_DIGITS = frozenset(string.hexdigits)


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
    """Pairs (a, b) of ids whose videos are near duplicates, a before b in `hashes`' order, sorted.

    A pair qualifies when its first frames differ by at most `2 * threshold` bits and
    `hash_distance(a, b) <= threshold`. Ids without a hash are skipped.
    """
    ids = [key for key, value in hashes.items() if value]
    if len(ids) < 2 or not threshold >= 0:  # no distance is negative (or below NaN)
        return []
    flat, offsets, lengths = _parse(ids, hashes)
    first_words, video_word = np.unique(flat[offsets], return_inverse=True)
    video_order = np.argsort(video_word, kind="stable")  # the videos of each distinct first word, together
    group_start = np.searchsorted(video_word[video_order], np.arange(len(first_words)))
    group_size = np.bincount(video_word, minlength=len(first_words))
    found = []
    for first, second in _candidates(first_words, video_order, group_start, group_size, 2 * threshold):
        n = np.minimum(lengths[first], lengths[second])
        keep = _differing_bits(flat, offsets[first], offsets[second], n) / n <= threshold
        low, high = np.minimum(first[keep], second[keep]), np.maximum(first[keep], second[keep])
        found.append(low * len(ids) + high)
    codes = np.sort(np.concatenate(found)) if found else np.empty(0, np.int64)
    return [(ids[code // len(ids)], ids[code % len(ids)]) for code in codes.tolist()]


def _parse(ids: list[str], hashes: dict[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All videos' words in one array, with each video's first index and word count."""
    texts = [hashes[key] for key in ids]
    joined = "".join(texts)
    try:
        raw = bytes.fromhex(joined)
    except ValueError:
        raw = b""
    if 2 * len(raw) != len(joined) or any(len(text) % 16 for text in texts):  # fromhex skips spaces
        bad = next(i for i, text in enumerate(texts) if len(text) % 16 or set(text) - _HEX_DIGITS)
        raise TkdsError(
            f"video {ids[bad]}: frame hash {tkds_ids.preview(texts[bad])} is not 16-digit hex words; "
            "clear media.frame_hash for it or rebuild with a transcode (--size) to hash it again"
        )
    del joined
    flat = np.frombuffer(raw, dtype=">u8").astype(np.uint64)
    del raw
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)) // 16
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return flat, offsets, lengths


def _differing_bits(flat: np.ndarray, first: np.ndarray, second: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Bits differing over the first n[i] aligned words of the videos starting at first[i] and second[i]."""
    longest_first = np.argsort(-n, kind="stable")
    first, second, n_sorted = first[longest_first], second[longest_first], n[longest_first]
    total = np.zeros(len(n), dtype=np.int64)
    for column in range(int(n_sorted[0]) if len(n) else 0):
        active = int(np.searchsorted(-n_sorted, -column, side="left"))  # the pairs with n > column
        total[:active] += np.bitwise_count(flat[first[:active] + column] ^ flat[second[:active] + column])
    differing = np.empty_like(total)
    differing[longest_first] = total
    return differing


def _candidates(
    first_words: np.ndarray,
    video_order: np.ndarray,
    group_start: np.ndarray,
    group_size: np.ndarray,
    limit: float,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of video index pairs whose first words differ by at most `limit` bits: each pair once."""
    # videos sharing a first word: all pairs inside each group
    run_end = np.repeat(group_start + group_size, group_size)
    for low, high in _pairs_within_runs(run_end):
        yield video_order[low], video_order[high]
    # videos of two distinct close words: the cross product of the two groups
    word_a, word_b = _close_words(first_words, limit)
    counts = group_size[word_a] * group_size[word_b]
    ends = np.cumsum(counts)
    for start in range(0, int(ends[-1]) if len(ends) else 0, _BATCH):
        index = np.arange(start, min(start + _BATCH, int(ends[-1])))
        pair = np.searchsorted(ends, index, side="right")
        rank = index - (ends[pair] - counts[pair])
        a, b = word_a[pair], word_b[pair]
        yield (
            video_order[group_start[a] + rank // group_size[b]],
            video_order[group_start[b] + rank % group_size[b]],
        )


def _pairs_within_runs(run_end: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of positions (p, q), p < q < run_end[p]: every pair inside each run of a sorted array."""
    partners = run_end - np.arange(len(run_end))
    del run_end  # freed here when the caller passed it inline
    partners -= 1
    positions = np.flatnonzero(partners)
    counts = partners[positions]
    del partners
    ends = np.cumsum(counts)
    for start in range(0, int(ends[-1]) if len(ends) else 0, _BATCH):
        index = np.arange(start, min(start + _BATCH, int(ends[-1])))
        slot = np.searchsorted(ends, index, side="right")
        low = positions[slot]
        yield low, low + 1 + index - (ends[slot] - counts[slot])


def _close_words(words: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (a < b) of distinct 64-bit words that differ by at most `limit` bits."""
    k = min(math.floor(limit), 64)
    if k >= 64:  # every pair qualifies
        return np.triu_indices(len(words), 1)
    chunks, radius = _plan(len(words), k)
    found = []
    for shift, width in chunks:
        values = (words >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        ball = np.array(
            [
                sum(1 << bit for bit in flips)
                for r in range(radius + 1)
                for flips in combinations(range(width), r)
            ],
            dtype=np.uint64,
        )
        # each listed value with its word's index (< 2**32) in the low 32 bits: one in-place sort
        entries = values[:, None] ^ ball[None, :]
        entries <<= np.uint64(32)
        entries |= np.arange(len(words), dtype=np.uint64)[:, None]
        entries = entries.ravel()
        entries.sort()
        listed = entries >> np.uint64(32)
        boundaries = np.flatnonzero(listed[1:] != listed[:-1]) + 1
        del listed
        run_lengths = np.diff(np.concatenate(([0], boundaries, [len(entries)])))
        run_ends = np.concatenate((boundaries, [len(entries)]))
        del boundaries
        for low, high in _pairs_within_runs(np.repeat(run_ends, run_lengths)):
            a = (entries[low] & np.uint64(0xFFFFFFFF)).astype(np.int64)
            b = (entries[high] & np.uint64(0xFFFFFFFF)).astype(np.int64)
            close = np.bitwise_count(words[a] ^ words[b]) <= limit
            found.append(np.minimum(a[close], b[close]) * len(words) + np.maximum(a[close], b[close]))
    codes = np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)
    return codes // len(words), codes % len(words)


def _plan(n: int, k: int) -> tuple[list[tuple[int, int]], int]:
    """The chunks (shift, width) and ball radius that list the fewest values and collisions for n words."""
    best = None
    for m in range(2, max(k, 1) + 2):  # at least two chunks: a chunk and a word index share 64 bits
        widths = [64 // m + (i < 64 % m) for i in range(m)]
        radius = math.ceil(k // m / 2)
        listed = n * sum(math.comb(max(widths), r) for r in range(radius + 1))
        cost = m * (listed + listed**2 / 2 ** (min(widths) + 1))
        if best is None or cost < best[0]:
            shifts = np.concatenate(([0], np.cumsum(widths)[:-1])).tolist()
            best = (cost, list(zip(shifts, widths, strict=True)), radius)
    return best[1], best[2]
