"""What `tkds serve` predicts for one video, from one bench run, with the read-outs its bench saved.

From the run's chosen row (the best learned row of its leaderboard unless named), its seed-0 cell's
read-outs (`tkds.benchmarks.readouts`), loaded as saved and never refitted:
- likes: the likes task's served ridge (`combined`: author statistics beside the embedding, fitted on the
  author-disjoint train split), a leaderboard row named on the page. The user's follower count is its
  one author input; what an upload cannot say (author hearts, author videos, the video's age, and the
  followers when not given) takes the train median, as its standardiser imputes. The estimate is the fit
  plus the test rows' median residual and the interval the fit plus their 10th and 90th percentile, so
  the interval holds the estimate by construction (one monotone map takes all three to likes);
- hashtags: the hashtags task's kNN read-out (k = 20, cosine) over the train videos' tags, as the
  similarity-weighted share of those neighbours that used each tag; the caption never changes the
  shares, it only marks the suggested tags it already holds;
- similar videos: cosine nearest neighbours among every embedded video of the run, but the upload
  itself (the same file, or one nearly identical to it);
- originality: the originality task's IsolationForest score, as a percentile within the upload's
  cohort, the corpus videos with the majority label of its 20 nearest neighbours (all videos when that
  cohort has fewer than 5), next to the run's own finding on originality against likes.
Captions, likes, TikTok links and thumbnails of the corpus come from the run's shards, read by offset.

An upload is probed first (`tkds.collector.media.probe`: PyAV in this process, which reads the
container and demuxes every packet without decoding one) and refused with 413 past `UploadLimits`; it is
then decoded in this process, only the frames its eval clips need, and when those would take over
MAX_DECODED_BYTES at full size, scaled and centre-cropped inside the decoder to the shards' frame size:
memory is bounded by the limits, not by what the file declares.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from tkds.benchmarks.features import METADATA_COLUMNS
from tkds.benchmarks.readouts import READOUTS, load_readouts
from tkds.benchmarks.readouts import paths as readout_paths
from tkds.benchmarks.tasks.hashtags import HashtagsReadout
from tkds.benchmarks.tasks.likes import LikesReadout
from tkds.benchmarks.tasks.originality import OriginalityReadout
from tkds.dataset.split import SPLITS
from tkds.errors import TkdsError
from tkds.ids import preview

TOP_TAGS = 5
SIMILAR = 10
UNREADABLE = "{name} is cut short or damaged: it cannot be read as a video; upload the whole file"
SAME_VIDEO = 0.999  # cosine at which a corpus video is the upload itself (or a re-encode of it)
COHORT_NEIGHBOURS = 20
MAX_FOLLOWERS = 10**10  # more than anyone has; past it the fit is pure extrapolation
MAX_CAPTION = 2200  # TikTok's own limit
MAX_LIKES = 10**12  # estimates are capped here: a linear fit far outside its data can say anything
# The short side of decoded upload frames when the shards kept their sources' size (--size 0).
DECODE_SIDE = 256
# Uploads whose eval frames would take more than this at full size are scaled inside the decoder (which is
# slower, so smaller ones are decoded as the bench decodes its shards).
MAX_DECODED_BYTES = 2**28
CLIPS = 4  # as the bench embeds
# |ρ| below this is reported as "little difference" rather than a direction.
FINDING_THRESHOLD = 0.1
# mp4/mov boxes that can open a file, and the Matroska/WebM magic: what counts as a video container.
MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide")
MATROSKA_MAGIC = b"\x1a\x45\xdf\xa3"


class PredictError(TkdsError):
    """Input that cannot be predicted for; `status` is the HTTP status the app answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may declare: its largest video stream's size, its duration and its frame count."""

    max_width: int = 4096
    max_height: int = 4096
    max_seconds: float = 600.0
    max_frames: int = 18_000  # 10 minutes at 30 fps

    def check(self, facts: dict, name: str) -> dict:
        """The video stream to decode from the probe's `facts`; PredictError (413, 422) naming the limit."""
        from tkds.collector.media import choose_streams, duration_of

        # A cover picture (an audio file's artwork) is a one-frame "video" stream, not a video.
        moving = [s for s in facts.get("streams", []) if not (s.get("disposition") or {}).get("attached_pic")]
        facts = {**facts, "streams": moving}
        video, _ = choose_streams(facts)
        if video is None:
            raise PredictError(f"{name} has no video stream (sound only?); upload a video file", 422)
        for stream in (s for s in moving if s.get("codec_type") == "video"):
            width, height = _whole(stream.get("width")), _whole(stream.get("height"))
            if not width or not height:
                raise PredictError(f"{name}: a video stream declares no frame size; upload an mp4", 422)
            if width > self.max_width or height > self.max_height:
                raise PredictError(
                    f"{name} has {width}×{height} frames; this server takes at most "
                    f"{self.max_width}×{self.max_height}",
                    413,
                )
            frames = max(_whole(stream.get("nb_frames")), _whole(stream.get("nb_read_packets")))
            if frames > self.max_frames:
                raise PredictError(
                    f"{name} has {frames:,} frames; this server takes at most {self.max_frames:,}", 413
                )
        duration = duration_of(facts, video)
        if duration is not None and not (math.isfinite(duration) and duration <= self.max_seconds):
            raise PredictError(
                f"{name} lasts {duration:,.0f} s; this server takes at most {self.max_seconds:,.0f} s", 413
            )
        return video


def _whole(value: object) -> int:
    """A count or size from the probe's facts, in ffprobe's json shape (a number, a digit string, "N/A"
    or absent), as an int, else 0."""
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else 0


def likes_with_interval(log_likes: float, band: tuple[float, ...]) -> tuple[int, tuple[int, int]]:
    """(estimate, 80 % interval) in likes, from the fit's log(1 + likes) and the test residuals' 10th,
    50th and 90th percentile.

    The estimate is the fit plus the median residual and the interval the fit plus the 10th and 90th:
    three ordered numbers under one monotone map (capped expm1, rounded), so low ≤ estimate ≤ high.
    """
    low, middle, high = (_likes(log_likes + residual) for residual in sorted(band))
    return middle, (low, high)


def _likes(log1p_likes: float) -> int:
    return round(float(np.expm1(np.clip(log1p_likes, 0.0, math.log1p(MAX_LIKES)))))


@dataclass(frozen=True)
class Hashtag:
    tag: str
    score: float  # share of the similarity-weighted nearest train videos that used it, 0–1
    in_caption: bool


@dataclass(frozen=True)
class Similar:
    id: str
    caption: str
    likes: int | None
    url: str | None
    thumbnail: str | None  # the app's path of its jpg
    similarity: float


@dataclass(frozen=True)
class Prediction:
    likes: int  # the fit plus the test split's median residual
    interval: tuple[int, int]  # 10th–90th percentile, from the test split's residuals
    likes_model: str  # the leaderboard row whose ridge this is, and its test R²
    likes_log1p: float  # that ridge's own prediction, log(1 + likes), before the residuals
    followers: int
    followers_assumed: bool
    hashtags: list[Hashtag]
    similar: list[Similar]
    originality: float  # percentile of the IsolationForest score within `cohort`, 0–100
    originality_score: float  # that score, as the originality task's read-out gives it
    cohort: str
    finding: str
    notes: list[str]
    timings: dict[str, float]  # decode_ms, embed_ms, predict_ms
    method: str


@dataclass(frozen=True)
class CorpusVideo:
    caption: str
    likes: int | None
    url: str | None
    thumbnail: tuple[Path, int, int] | None  # (tar, offset, size) of its jpg
    duration_s: float | None = None
    sha256: str | None = None  # of the collected file


NO_VIDEO = CorpusVideo("", None, None, None)


def choose_row(rows: list[dict], method: str | None) -> dict:
    """The leaderboard row to serve: the best learned one, or `method`'s (audio-visual when it has it)."""
    from tkds.benchmarks.leaderboard import best_learned

    learned = [r for r in rows if r.get("config_hash") not in (None, "-")]
    if method is None:
        row = best_learned(rows)
        if row is None:
            raise TkdsError(
                "the run has no learned method with results to serve; run tkds bench with one of "
                "random, simclr, av-simclr, moco, vicreg, supervised"
            )
        return row
    mine = [r for r in learned if r["method"] == method]
    if not mine:
        names = sorted({r["method"] for r in learned})
        raise TkdsError(f"--method {method} has no results in this run; choose one of {', '.join(names)}")
    return next((r for r in mine if r["features"] == "audio-visual"), mine[0])


def check_run(run: Path, method: str | None) -> tuple[dict, dict]:
    """(leaderboard, chosen row) of `run`, after checking every file serving needs; names all missing."""
    from tkds.dataset.loader import read_index

    board_path = run / "leaderboard.json"
    if not board_path.is_file():
        raise TkdsError(
            f"{run} is not a bench run: {board_path} is missing; make one with tkds bench or tkds demo"
        )
    board = json.loads(board_path.read_text())
    row = choose_row(board["rows"], method)
    cell = run / row["method"] / "seed0"
    shards = Path(board["dataset"]["shards"])
    missing = [p for p in (cell / "checkpoint.pt", cell / "embeddings.parquet") if not p.is_file()]
    hint = [f"delete {cell} and re-run tkds bench with --out {run} to rebuild it"] if missing else []
    unsaved = [p for p in readout_paths(cell, row["features"]) if not p.is_file()]
    if unsaved and not missing:
        hint.append(
            f"re-run tkds bench to save read-outs (the same command, --out {run}; checkpoints are reused)"
        )
    missing += unsaved
    indexes = [shards / f"{split}.json" for split in SPLITS]
    lost = [p for p in indexes if not p.is_file()]
    lost += [
        s.path for p in indexes if p.is_file() for s in read_index(shards, p.stem) if not s.path.is_file()
    ]
    if lost:
        hint.append(f"rebuild the shards at {shards} with tkds shard")
    if missing or lost:
        raise TkdsError(
            f"the run {run} lacks what tkds serve needs: {', '.join(map(str, missing + lost))}; "
            + "; ".join(hint)
        )
    return board, row


def read_corpus(shards: Path) -> dict[str, CorpusVideo]:
    """Each shard sample's caption, likes, link and thumbnail location, from the tar headers and jsons."""
    from tkds.dataset.loader import read_metas

    corpus = {}
    for split in SPLITS:
        for shard, key, members, meta in read_metas(shards, split):
            jpg = members.get("jpg")
            corpus[key] = CorpusVideo(
                caption=meta.get("description") or "",
                likes=(meta.get("stats") or {}).get("likes"),
                url=meta.get("url"),
                thumbnail=(shard.path, *jpg) if jpg else None,
                duration_s=_number_or_none(meta.get("duration_s")),
                sha256=(meta.get("source") or {}).get("sha256"),
            )
    return corpus


def _number_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _span(values: list[float]) -> tuple[float, float] | None:
    known = [v for v in values if v is not None and math.isfinite(v)]
    return (min(known), max(known)) if known else None


def _shard_side(shards: Path) -> int:
    """The short side the shards' videos were scaled to, or DECODE_SIDE when they kept their own."""
    try:
        size = json.loads((shards / "dataset.json").read_text())["params"]["size"]
    except (OSError, ValueError, KeyError, TypeError):
        return DECODE_SIDE
    return size if isinstance(size, int) and 0 < size <= DECODE_SIDE else DECODE_SIDE


def probe_upload(video: bytes, name: str) -> dict:
    """The probe's facts of an upload, in ffprobe's json shape, taken in this process with PyAV
    (container and stream headers, packets counted, nothing decoded)."""
    from tkds.collector.media import probe

    with tempfile.TemporaryDirectory(prefix="tkds-upload-") as folder:
        path = Path(folder) / "upload"
        try:
            path.write_bytes(video)
        except OSError as error:
            raise PredictError(
                f"the server cannot hold {name} now ({error.strerror}); try later", 503
            ) from None
        try:
            return probe(path)
        except (ValueError, OSError):
            raise PredictError(UNREADABLE.format(name=name), 422) from None


def decoder_transforms(width: int, height: int, side: int) -> list:
    """Scale so the short side is `side` (never up), then crop the centre square the eval clips use."""
    from torchcodec.transforms import CenterCrop, Resize

    from tkds.dataset.transcode import output_size

    scaled_width, scaled_height = output_size(width, height, side)
    square = min(scaled_width, scaled_height)
    return [Resize((scaled_height, scaled_width)), CenterCrop((square, square))]


def looks_like_video(data: bytes) -> bool:
    """Whether `data` opens like an mp4/mov or Matroska/WebM file."""
    return data[4:8] in MP4_BOXES or data.startswith(MATROSKA_MAGIC)


def check_fields(followers: object, caption: object) -> None:
    """PredictError (422) unless followers is a whole number in 0..MAX_FOLLOWERS and the caption fits."""
    if followers is not None and (
        isinstance(followers, bool) or not isinstance(followers, int) or not 0 <= followers <= MAX_FOLLOWERS
    ):
        raise PredictError(
            f"followers must be a whole number from 0 to {MAX_FOLLOWERS:,}, not {preview(followers)}", 422
        )
    if caption is not None and (not isinstance(caption, str) or len(caption) > MAX_CAPTION):
        raise PredictError(f"the caption must be text of at most {MAX_CAPTION:,} characters", 422)


def caption_tags(caption: str | None) -> set[str]:
    """The hashtags written in a caption, lower case, without '#'."""
    return {tag.lower() for tag in re.findall(r"#(\w+)", caption or "")}


def finding_text(row: dict) -> str:
    """The run's originality-vs-likes result, in words with its sign."""
    value = (row["metrics"].get("originality") or {}).get("spearman_iforest") or {}
    rho = value.get("mean")
    if rho is None:
        return "This run has no finding on originality against likes: too few videos with likes."
    if rho >= FINDING_THRESHOLD:
        words = "more original videos got more likes"
    elif rho <= -FINDING_THRESHOLD:
        words = "more original videos got fewer likes"
    else:
        words = "originality made little difference to likes"
    seeds = f"mean of {value['n']} seeds" if value.get("n", 1) > 1 else "one seed"
    return (
        f"In this run, {words}: Spearman ρ = {rho:+.2f} between the IsolationForest score and "
        f"log(1 + likes), within authors ({seeds})."
    )


@dataclass
class Predictor:
    """One run's method and fitted read-outs; `predict` is thread-safe (calls run one at a time)."""

    run: Path
    row: dict
    label_column: str
    model: object  # tkds.models.methods.Method
    keys: list[str]
    x: np.ndarray  # the corpus embedding per the row's features
    corpus: dict[str, CorpusVideo]
    likes: LikesReadout
    hashtags: HashtagsReadout
    originality: OriginalityReadout
    labels: np.ndarray  # the corpus videos' labels, in the originality read-out's order
    finding: str
    followers_span: tuple[float, float] | None = None  # the corpus's fewest and most followers
    duration_span: tuple[float, float] | None = None  # its shortest and longest video, seconds
    decode_side: int = DECODE_SIDE  # the short side of decoded upload frames
    limits: UploadLimits = field(default_factory=UploadLimits)
    load_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def method(self) -> str:
        return f"{self.row['method']} ({self.row['features']})"

    @property
    def likes_model(self) -> str:
        """The served likes row in words: its ridge, method, features and test R² (seed 0's)."""
        seed = ", seed 0" if self.row.get("seeds", 1) > 1 else ""
        return f"{self.likes.inputs} ridge of {self.method}{seed}, R² {self.likes.r2:.2f} on test"

    @classmethod
    def load(
        cls, run: str | Path, method: str | None = None, limits: UploadLimits | None = None
    ) -> Predictor:
        """Check `run`, load its method's checkpoint, embeddings and saved read-outs (nothing is fitted);
        `limits` bound the uploads it takes."""
        from tkds.benchmarks.features import embedding
        from tkds.models.checkpoint import load_method

        started = time.perf_counter()
        run = Path(run)
        board, row = check_run(run, method)
        cell = run / row["method"] / "seed0"
        table = pl.read_parquet(cell / "embeddings.parquet")
        x = embedding(table, row["features"])
        readouts = load_readouts(cell, row["features"])
        for name in READOUTS:
            if not isinstance(readouts.get(name), READOUTS[name]):
                reason = readouts.get(name) or "not among the run's tasks"
                raise TkdsError(
                    f"{run} has no {name} read-out for {row['method']} ({row['features']}): {reason}; "
                    "tkds serve needs the likes, hashtags and originality tasks' read-outs"
                )
        likes, hashtags, originality = (readouts[name] for name in ("likes", "hashtags", "originality"))
        author_width = 0 if likes.inputs == "content" else len(METADATA_COLUMNS)
        fits = (
            np.array_equal(originality.keys, np.array(table["key"].to_list(), dtype=str))
            and hashtags.train_x.shape[1] == originality.forest.width == x.shape[1]
            and len(likes.ridge.standardiser.kept) == author_width + x.shape[1]
        )
        if not fits:
            raise TkdsError(
                f"the read-outs of {cell} do not match its embeddings.parquet; delete {cell} and re-run "
                "tkds bench to save read-outs"
            )
        shards = Path(board["dataset"]["shards"])
        model = load_method(cell / "checkpoint.pt")
        corpus = read_corpus(shards)
        return cls(
            run=run,
            row=row,
            label_column=board["dataset"].get("label_column") or "label",
            model=model,
            keys=table["key"].to_list(),
            x=x,
            corpus=corpus,
            likes=likes,
            hashtags=hashtags,
            originality=originality,
            labels=table["label"].to_numpy(),
            finding=finding_text(row),
            followers_span=_span(table["followers"].cast(pl.Float64).to_list()),
            duration_span=_span([video.duration_s for video in corpus.values()]),
            decode_side=max(_shard_side(shards), model.preset.size),
            limits=limits or UploadLimits(),
            load_s=time.perf_counter() - started,
        )

    def _similar(self, indices: np.ndarray, sims: np.ndarray, digest: str) -> tuple[list[Similar], list[str]]:
        """The nearest corpus videos but the upload itself (the same file, or cosine >= SAME_VIDEO), and
        the keys left out as the upload."""
        itself = [
            self.keys[i] for i, sim in zip(indices, sims, strict=True)
            if sim >= SAME_VIDEO or self.corpus.get(self.keys[i], NO_VIDEO).sha256 == digest
        ]  # fmt: skip
        similar = []
        for index, sim in zip(indices, sims, strict=True):
            key = self.keys[index]
            if key in itself or len(similar) == SIMILAR:
                continue
            info = self.corpus.get(key, NO_VIDEO)
            thumbnail = f"/thumbs/{key}.jpg" if info.thumbnail else None
            similar.append(Similar(key, info.caption, info.likes, info.url, thumbnail, round(float(sim), 3)))
        return similar, itself

    def _outside_corpus(self, followers: int, duration: float | None) -> list[str]:
        """Notes for inputs outside what the read-outs were fitted on."""
        notes = []
        if self.followers_span and not self.followers_span[0] <= followers <= self.followers_span[1]:
            low, high = self.followers_span
            notes.append(
                f"{followers:,} followers is outside the corpus's {low:,.0f} to {high:,.0f}: "
                "the likes estimate extrapolates its fit, so read it with care."
            )
        if duration is not None and self.duration_span:
            low, high = self.duration_span
            if not low <= duration <= high:
                notes.append(
                    f"The video lasts {duration:,.1f} s, outside the corpus's {low:,.1f} to {high:,.1f} s: "
                    "its predictions are less certain."
                )
        return notes

    def thumbnail(self, key: str) -> bytes | None:
        """The jpg of corpus video `key`, or None when it has none."""
        video = self.corpus.get(key)
        if video is None or video.thumbnail is None:
            return None
        path, offset, size = video.thumbnail
        with open(path, "rb") as file:
            file.seek(offset)
            return file.read(size)

    def embed(
        self, video: bytes, name: str = "upload"
    ) -> tuple[np.ndarray, bool, float | None, dict[str, float]]:
        """(the upload's embedding per the row's features, whether it has audio, its duration in seconds,
        decode/embed ms)."""
        from tkds.benchmarks.features import embedding
        from tkds.collector.media import duration_of
        from tkds.dataset.loader import ClipSpec, collate, example_from_video
        from tkds.models.embed import embed_batches

        if not looks_like_video(video):
            raise PredictError(f"{name} is not a video file (not mp4, mov, webm or mkv); upload an mp4", 415)
        preset = self.model.preset
        spec = ClipSpec(preset.frames, preset.size, preset.audio_seconds, preset.sample_rate, preset.n_mels,
                        CLIPS, train=False)  # fmt: skip
        started = time.perf_counter()
        facts = probe_upload(video, name)
        stream = self.limits.check(facts, name)
        width, height = stream["width"], stream["height"]
        full_size = spec.views * spec.frames * width * height * 3
        small = full_size <= MAX_DECODED_BYTES
        transforms = None if small else decoder_transforms(width, height, self.decode_side)
        try:
            example = example_from_video(video, spec, key=name, transforms=transforms)
        except TkdsError:
            raise PredictError(UNREADABLE.format(name=name), 422) from None
        decoded = time.perf_counter()
        emb = embed_batches(self.model, [collate([example])], "cpu", source=name)
        embedded = time.perf_counter()
        row = pl.DataFrame({"video": [emb.video[0].tolist()], "audio": [emb.audio[0].tolist()]})
        timings = {"decode_ms": (decoded - started) * 1e3, "embed_ms": (embedded - decoded) * 1e3}
        duration = duration_of(facts, stream)
        return embedding(row, self.row["features"]), bool(emb.has_audio[0]), duration, timings

    def predict(
        self, video: bytes, followers: int | None = None, caption: str | None = None, name: str = "upload"
    ) -> Prediction:
        """Likes, hashtags, similar videos and originality for one video file's bytes."""
        from tkds.benchmarks.features import cosine_neighbours, metadata_features
        from tkds.benchmarks.tasks.originality import MIN_COHORT

        check_fields(followers, caption)
        with self._lock:
            query, has_audio, duration, timings = self.embed(video, name)
            started = time.perf_counter()
            notes = []
            if not has_audio:
                notes.append("No audio track: predicted from the video alone.")
            # The one author statistic a user gives; the rest (and followers when not given) are unknown,
            # and the read-out's standardiser imputes them at their train medians.
            author = metadata_features(
                pl.DataFrame({"followers": [followers]}, schema={"followers": pl.Int64})
            )
            log_likes = float(self.likes.predict(author, query)[0])
            assumed = followers is None
            if assumed:
                median = self.likes.median("followers")
                followers = 0 if median is None else round(median)
                notes.append(
                    "No follower count given: the likes model does not use followers."
                    if median is None
                    else f"No follower count given: assumed the train median, {followers:,}."
                )
            likes, interval = likes_with_interval(log_likes, tuple(self.likes.residuals))
            if max(likes, *interval) >= MAX_LIKES:
                notes.append(f"The fit is far outside its data here: likes are capped at {MAX_LIKES:,}.")
            notes += self._outside_corpus(followers, duration)

            shares = self.hashtags.shares(query)[0]
            vocabulary = self.hashtags.vocabulary.tolist()
            written = caption_tags(caption)
            order = sorted(range(len(vocabulary)), key=lambda i: (-shares[i], vocabulary[i]))
            hashtags = [
                Hashtag(vocabulary[i], round(float(shares[i]), 3), vocabulary[i].lower() in written)
                for i in order[:TOP_TAGS]
            ]

            indices, sims = cosine_neighbours(query, self.x, max(SIMILAR, COHORT_NEIGHBOURS) + 1)
            similar, itself = self._similar(indices[0], sims[0], hashlib.sha256(video).hexdigest())
            if itself:
                shown = ", ".join(itself)
                notes.append(f"The corpus holds this video ({shown}); similar videos leave it out.")

            score = float(self.originality.score(query)[0])
            near = [label for label in self.labels[indices[0][:COHORT_NEIGHBOURS]] if label is not None]
            label = Counter(near).most_common(1)[0][0] if near else None
            members = self.labels == label if label is not None else np.zeros(len(self.labels), dtype=bool)
            if members.sum() >= MIN_COHORT:
                cohort = f"{int(members.sum())} videos with {self.label_column} “{label}”"
                scores = self.originality.corpus_scores[members]
            else:
                scores = self.originality.corpus_scores
                cohort = f"all {len(scores)} videos of the corpus"
                if label is not None:
                    cohort += f" (its nearest {self.label_column}, “{label}”, has fewer than {MIN_COHORT})"
            percentile = 100.0 * (np.sum(scores < score) + 0.5 * np.sum(scores == score)) / len(scores)
            timings["predict_ms"] = (time.perf_counter() - started) * 1e3
        return Prediction(
            likes=likes,
            interval=interval,
            likes_model=self.likes_model,
            likes_log1p=log_likes,
            followers=followers,
            followers_assumed=assumed,
            hashtags=hashtags,
            similar=similar,
            originality=round(float(percentile), 1),
            originality_score=score,
            cohort=cohort,
            finding=self.finding,
            notes=notes,
            timings={stage: round(ms, 1) for stage, ms in timings.items()},
            method=self.method,
        )
