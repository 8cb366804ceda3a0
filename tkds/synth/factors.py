"""SynthTok's generative factors: categories, sounds, authors, videos, and the likes model.

Everything here is parameters and arithmetic; rendering lives in `visuals` and `audio`. The same
`draw_videos` serves the corpus and the Monte Carlo estimate of the Bayes-optimal R², so the ceiling
is computed on exactly the process that made the data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from tkds.errors import TkdsError

CATEGORY_NAMES = (
    "dance", "cooking", "pets", "comedy", "fitness", "beauty", "travel", "gaming",
    "diy", "music", "art", "science", "fashion", "cars", "sports", "garden",
)  # fmt: skip
SHAPES = ("circle", "square", "triangle", "ring", "diamond", "cross", "stripes", "star")
MOTIONS = ("orbit", "bounce", "zoom", "drift", "shake", "wave", "spin", "pulse")
GENERIC_TAGS = (("fyp", 0.5), ("foryou", 0.35), ("viral", 0.2), ("trending", 0.1), ("foryoupage", 0.1))
TAG_SUFFIXES = ("", "tok", "life", "tips", "daily", "lover", "time", "hacks")
CAPTION_WORDS = (
    "today", "new", "wait", "for", "it", "best", "day", "ever", "my", "first", "try", "this", "so",
    "good", "part", "two", "when", "you", "finally", "get", "it", "right", "pov", "little", "big",
)  # fmt: skip
HANDLE_ADJECTIVES = ("sunny", "lazy", "brave", "tiny", "wild", "calm", "neon", "retro", "cosmic", "velvet")
HANDLE_NOUNS = ("fox", "otter", "panda", "koala", "tiger", "lynx", "heron", "gecko", "moth", "yak")

# Timbre families, one per category: (harmonic amplitudes, attack s, decay s, tempo range, MIDI register).
TIMBRES = (
    ((1.0, 0.1, 0.05, 0, 0, 0, 0, 0), 0.08, 0.50, (70, 85), (60, 67)),  # sine pad
    ((1.0, 0, 0.33, 0, 0.2, 0, 0.14, 0), 0.01, 0.30, (120, 135), (67, 74)),  # square lead
    ((1.0, 0.5, 0.33, 0.25, 0.2, 0.17, 0.14, 0.12), 0.005, 0.25, (95, 110), (40, 47)),  # saw bass
    ((1.0, 0, 0.6, 0, 0.4, 0, 0, 0.3), 0.002, 0.90, (60, 70), (72, 79)),  # bell
    ((1.0, 0.35, 0.19, 0.13, 0.09, 0.07, 0.05, 0.04), 0.002, 0.12, (140, 160), (55, 62)),  # pluck
    ((1.0, 1.0, 0, 1.0, 0, 0, 0, 1.0), 0.03, 1.00, (85, 95), (48, 55)),  # organ
    ((1.0, 0.8, 0.1, 0.6, 0.1, 0.4, 0.1, 0.3), 0.02, 0.40, (105, 118), (62, 69)),  # hollow
    ((1.0, 0.7, 0.58, 0.5, 0.45, 0.41, 0.38, 0.35), 0.01, 0.20, (165, 180), (76, 83)),  # bright
)
SCALES = ((0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10), (0, 2, 4, 7, 9))

# Visual parameters scattered per video, with their scatter (the unit of originality).
VISUAL_PARAMS = ("hue", "saturation", "size", "speed", "count")
VISUAL_SCATTER = np.array([8.0, 0.08, 0.15, 0.15, 0.6])
PAIR_HUE_OFFSET = 6.0  # degrees either side of the pair's hue: the only visual cue inside a pair
AUTHOR_HUE_SD = 10.0
OUTLIER_SCALE = 3.5
MAX_NEAR_DUPLICATES = 0.5  # a near duplicate needs an earlier original of its own category

LIKES_MODEL = {
    "intercept": 1.5,
    "log_followers": 0.75,
    "author_skill_sd": 0.5,
    "category_effect_sd": 0.5,
    "sound_popularity": 0.35,
    "originality": -0.2,
    "log1p_age_days": 0.25,
    "noise_sd": 0.55,
}
FORMULA = (
    "log1p(likes) = intercept + log_followers*log(followers) + skill[author] + effect[category]"
    " + sound_popularity*log(weight[sound]/max weight) + originality*originality"
    " + log1p_age_days*log1p(age_days) + N(0, noise_sd²)"
)


@dataclass(frozen=True)
class Difficulty:
    """Nuisance factors: what hides a video's category from its pixels and sound, without changing it."""

    name: str
    home_sound_prob: float  # a catalogue sound of the video's own category; otherwise a trending one
    clutter: tuple[int, int]  # distractor shapes per video (any shape, any hue), both ends included
    camera: float  # amplitude of the camera's pan, as a share of the frame's width
    crf: tuple[int, int]  # x264 CRF per video, both ends included (23 is x264's default)

    def record(self, original_sound_prob: float) -> dict:
        """The settings as JSON, with the share of videos on a trending sound that they imply."""
        trending = (1 - original_sound_prob) * (1 - self.home_sound_prob)
        return {**asdict(self), "trending_share": round(trending, 6)}


# `easy` is SynthTok as it was before difficulties: its corpora keep their bytes.
DIFFICULTIES = {
    level.name: level
    for level in (
        Difficulty("easy", home_sound_prob=0.7, clutter=(0, 0), camera=0.0, crf=(23, 23)),
        Difficulty("standard", home_sound_prob=0.3, clutter=(2, 5), camera=0.12, crf=(28, 34)),
        Difficulty("hard", home_sound_prob=0.1, clutter=(4, 8), camera=0.2, crf=(32, 40)),
    )
}


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a corpus; the same config and seed give the same bytes."""

    videos: int
    seed: int = 0
    width: int = 144
    height: int = 256
    seconds: tuple[float, float] = (5.0, 7.0)
    fps: int = 15
    categories: int = 8
    sample_rate: int = 44100
    home_sound_prob: float = field(init=False, default=0.7)  # the difficulty's
    original_sound_prob: float = 0.12
    outlier_prob: float = 0.03
    observed_at: int = 1793491200  # 2026-11-01 UTC: the clock the counts are observed at
    history_days: int = 540
    photo_share: float = 0.0  # the share of posts that are photo posts (images + a sound)
    media_pool: int | None = None  # render only this many video clips, shared by all video posts
    near_duplicates: float = 0.0  # the share of posts that are near duplicates of an earlier video
    difficulty: str = "easy"  # the nuisance factors (`DIFFICULTIES`)

    def __post_init__(self) -> None:
        if not isinstance(self.difficulty, str) or self.difficulty not in DIFFICULTIES:
            raise TkdsError(
                f"--difficulty must be one of {', '.join(DIFFICULTIES)} (got {self.difficulty!r})"
            )
        object.__setattr__(self, "home_sound_prob", self.nuisance.home_sound_prob)
        whole = {"--videos": self.videos, "--seed": self.seed, "--size": self.width, "--size ": self.height,
                 "--fps": self.fps, "--categories": self.categories}  # fmt: skip
        for option, value in whole.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise TkdsError(f"{option.strip()} must be a whole number (got {value!r})")
        if self.seed < 0:
            raise TkdsError(f"--seed must be 0 or more (got {self.seed})")
        if self.videos < 1:
            raise TkdsError(f"--videos must be at least 1 (got {self.videos})")
        if not (32 <= self.width <= 2160 and 32 <= self.height <= 3840):
            raise TkdsError(f"--size {self.width}x{self.height} is impossible: use 32..2160 x 32..3840")
        if self.width % 2 or self.height % 2:
            raise TkdsError(f"--size {self.width}x{self.height} is impossible: H.264 4:2:0 needs even sides")
        lo, hi = self.seconds
        if not (0.5 <= lo <= hi <= 600):
            raise TkdsError(f"--seconds {lo:g}-{hi:g} is impossible: need 0.5 <= A <= B <= 600")
        if not 1 <= self.fps <= 60:
            raise TkdsError(f"--fps must be 1..60 (got {self.fps})")
        if not 2 <= self.categories <= 32:
            raise TkdsError(f"--categories must be 2..32 (got {self.categories})")
        if not 0.0 <= self.photo_share <= 1.0:
            raise TkdsError(f"--photo-share must be a fraction 0..1 (got {self.photo_share:g})")
        pool = self.media_pool
        if pool is not None and (isinstance(pool, bool) or not isinstance(pool, int) or pool < 1):
            raise TkdsError(f"--media-pool must be a whole number of at least 1 (got {pool!r})")
        if pool is not None and pool > self.videos:
            raise TkdsError(
                f"--media-pool {pool} is more clips than --videos {self.videos}; use at most that many"
            )
        if not 0.0 <= self.near_duplicates <= MAX_NEAR_DUPLICATES:
            raise TkdsError(
                f"--near-duplicates must be a fraction 0..{MAX_NEAR_DUPLICATES:g} "
                f"(got {self.near_duplicates:g})"
            )
        if pool is not None and self.near_duplicates:
            raise TkdsError(
                "--near-duplicates needs distinct clips, and --media-pool makes them byte-identical copies; "
                "drop one of the two"
            )

    @property
    def nuisance(self) -> Difficulty:
        return DIFFICULTIES[self.difficulty]

    def record(self) -> dict:
        """The arguments as JSON, leaving out the options at their defaults that older corpora lack."""
        values = {**asdict(self), "seconds": list(self.seconds)}
        for name, default in (("media_pool", None), ("near_duplicates", 0.0), ("difficulty", "easy")):
            if values[name] == default:
                del values[name]
        return values


@dataclass(frozen=True)
class Category:
    index: int
    name: str
    pair: int
    shape: str
    motion: str
    prototype: tuple[float, ...]  # VISUAL_PARAMS at the category's centre
    timbre: int
    tags: tuple[str, ...]
    likes_effect: float


@dataclass(frozen=True)
class Sound:
    id: str
    title: str
    author_name: str
    home_category: int
    original: bool
    weight: float  # Zipf popularity; original sounds carry the catalogue's smallest weight
    tempo_bpm: float
    root_midi: int
    scale: tuple[int, ...]
    pattern: tuple[int, ...]  # scale degrees per eighth note, -1 = rest
    harmonics: tuple[float, ...]
    attack_s: float
    decay_s: float
    duration_s: int
    challenge_tag: str


@dataclass(frozen=True)
class Author:
    id: str
    unique_id: str
    nickname: str
    sec_uid: str
    verified: bool
    followers: int
    following: int
    skill: float
    activity: float
    preferences: tuple[float, ...]
    style_hue: float
    background: int  # 0 stripes, 1 checker, 2 radial, 3 blobs
    background_hues: tuple[float, float]
    overlay_top: bool
    noise_level: float


@dataclass
class World:
    """The fixed part of a corpus: categories, the sound catalogue and the authors."""

    config: SynthConfig
    categories: list[Category]
    sounds: list[Sound]
    authors: list[Author]
    author_given_category: np.ndarray = field(repr=False)  # P(author | category), shape (A, K)

    @property
    def sound_popularity(self) -> np.ndarray:
        w = np.array([s.weight for s in self.sounds])
        return np.log(w / w.max())

    def author_terms(self) -> np.ndarray:
        """The likes terms that depend on the author only: followers and skill."""
        return np.array(
            [LIKES_MODEL["log_followers"] * math.log(a.followers) + a.skill for a in self.authors]
        )


def _nineteen_digit_id(rng: np.random.Generator, created: int) -> str:
    # TikTok ids carry their creation time in the top 32 bits.
    return str((int(created) << 32) | int(rng.integers(0, 2**32)))


def _sec_uid(rng: np.random.Generator) -> str:
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
    return "MS4wLjABAAAA" + "".join(rng.choice(alphabet, 52))


def build_world(config: SynthConfig) -> World:
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1]))
    k = config.categories
    n_pairs = math.ceil(k / 2)

    categories = []
    for i in range(k):
        pair = i // 2
        pair_hue = 360.0 * pair / n_pairs
        hue = (pair_hue + (PAIR_HUE_OFFSET if i % 2 else -PAIR_HUE_OFFSET)) % 360
        name = CATEGORY_NAMES[i] if i < len(CATEGORY_NAMES) else f"topic{i}"
        pair_rng = np.random.default_rng(np.random.SeedSequence([config.seed, 2, pair]))
        prototype = (
            hue,
            float(pair_rng.uniform(0.55, 0.9)),
            float(pair_rng.uniform(0.12, 0.22)),
            float(pair_rng.uniform(0.25, 0.7)),
            float(pair_rng.integers(2, 6)),
        )
        categories.append(
            Category(
                index=i,
                name=name,
                pair=pair,
                shape=SHAPES[pair % len(SHAPES)],
                motion=MOTIONS[(pair * 3) % len(MOTIONS)],
                prototype=prototype,
                timbre=i % len(TIMBRES),
                tags=tuple(f"{name}{suffix}" for suffix in TAG_SUFFIXES),
                likes_effect=float(rng.normal(0, LIKES_MODEL["category_effect_sd"])),
            )
        )

    n_sounds = max(2 * k, round(config.videos * 0.12))
    ranks = rng.permutation(n_sounds) + 1
    weights = 1.0 / ranks**1.1
    home = np.arange(n_sounds) % k  # every category owns some sounds
    rng.shuffle(home)
    sounds = [
        make_sound(rng, config, int(home[i]), float(weights[i]), original=False, artist=None)
        for i in range(n_sounds)
    ]

    n_authors = max(4, round(config.videos / 10))
    authors = []
    handles = set()
    for _ in range(n_authors):
        while True:
            adj, noun = rng.choice(HANDLE_ADJECTIVES), rng.choice(HANDLE_NOUNS)
            sep = rng.choice([".", "_", ""])  # real handles contain dots: never use them as keys
            handle = f"{adj}{sep}{noun}{int(rng.integers(1, 1000))}"
            if handle not in handles:
                handles.add(handle)
                break
        followers = max(10, round(math.exp(rng.normal(9.0, 1.8))))
        authors.append(
            Author(
                id=str(int(rng.integers(6_600_000_000_000_000_000, 7_400_000_000_000_000_000))),
                unique_id=handle,
                nickname=f"{adj.title()} {noun.title()}",
                sec_uid=_sec_uid(rng),
                verified=followers > 1_000_000,
                followers=followers,
                following=int(math.exp(rng.normal(5.0, 1.2))),
                skill=float(rng.normal(0, LIKES_MODEL["author_skill_sd"])),
                activity=float(rng.lognormal(0, 0.8)),
                preferences=tuple(float(p) for p in rng.dirichlet(np.full(k, 0.4))),
                style_hue=float(rng.normal(0, AUTHOR_HUE_SD)),
                background=int(rng.integers(0, 4)),
                background_hues=(float(rng.uniform(0, 360)), float(rng.uniform(0, 360))),
                overlay_top=bool(rng.random() < 0.5),
                noise_level=float(rng.uniform(2.0, 8.0)),
            )
        )
    activity = np.array([a.activity for a in authors])[:, None]
    preference = np.array([a.preferences for a in authors])
    joint = activity * preference
    return World(config, categories, sounds, authors, joint / joint.sum(axis=0, keepdims=True))


def make_sound(
    rng: np.random.Generator,
    config: SynthConfig,
    home_category: int,
    weight: float,
    *,
    original: bool,
    artist: str | None,
    created: int | None = None,
) -> Sound:
    """A melody in its home category's timbre family, with its own tempo, key and pattern."""
    harmonics, attack, decay, (tempo_lo, tempo_hi), (reg_lo, reg_hi) = TIMBRES[home_category % len(TIMBRES)]
    scale_index = int(rng.integers(0, len(SCALES)))
    pattern = tuple(int(d) if rng.random() > 0.15 else -1 for d in rng.integers(0, 8, 16))
    title_word = "".join(rng.choice(list("aeioukmnrstlv"), int(rng.integers(4, 8))))
    created = created if created is not None else config.observed_at - int(rng.integers(30, 900)) * 86400
    name = title_word.title()
    return Sound(
        id=_nineteen_digit_id(rng, created),
        title=f"original sound - {artist}" if original else f"{name} (sped up)",
        author_name=artist if original and artist else f"{name} Band",
        home_category=home_category,
        original=original,
        weight=weight,
        tempo_bpm=float(rng.uniform(tempo_lo, tempo_hi)),
        root_midi=int(rng.integers(reg_lo, reg_hi + 1)),
        scale=SCALES[scale_index],
        pattern=pattern,
        harmonics=tuple(float(h * rng.lognormal(0, 0.2)) for h in harmonics),
        attack_s=attack,
        decay_s=decay,
        duration_s=int(rng.integers(15, 61)),
        challenge_tag=f"{title_word}challenge",
    )


@dataclass
class VideoDraws:
    """n videos' factors as arrays; sound index -1 marks an original sound."""

    category: np.ndarray
    author: np.ndarray
    sound: np.ndarray
    deviation: np.ndarray  # (n, len(VISUAL_PARAMS)) in units of VISUAL_SCATTER
    outlier: np.ndarray
    create_time: np.ndarray
    frames: np.ndarray
    noise: np.ndarray
    trending: np.ndarray  # on a trending sound: drawn from the whole catalogue, whatever its category

    @property
    def originality(self) -> np.ndarray:
        return np.linalg.norm(self.deviation, axis=1) / math.sqrt(self.deviation.shape[1])


def draw_videos(world: World, n: int, rng: np.random.Generator) -> VideoDraws:
    cfg = world.config
    k = cfg.categories
    category = rng.integers(0, k, n)
    author = np.empty(n, dtype=np.int64)
    for c in range(k):
        members = np.flatnonzero(category == c)
        author[members] = rng.choice(len(world.authors), members.size, p=world.author_given_category[:, c])

    weights = np.array([s.weight for s in world.sounds])
    homes = np.array([s.home_category for s in world.sounds])
    trending_pick = rng.choice(len(weights), n, p=weights / weights.sum())  # anyone's sound
    sound = trending_pick.copy()
    easy_home = DIFFICULTIES["easy"].home_sound_prob
    use_home = rng.random(n) < easy_home
    for c in range(k):
        members = np.flatnonzero(use_home & (category == c))
        own = np.flatnonzero(homes == c)
        sound[members] = rng.choice(own, members.size, p=weights[own] / weights[own].sum())
    if cfg.home_sound_prob < easy_home:
        # Some of easy's home sounds turn trending, decided by a child stream: every later draw (each
        # video's scatter, time and noise) stays the easy corpus's, so only the nuisances differ.
        use_home &= rng.spawn(1)[0].random(n) < cfg.home_sound_prob / easy_home
        sound[~use_home] = trending_pick[~use_home]
    sound[rng.random(n) < cfg.original_sound_prob] = -1
    trending = ~use_home & (sound >= 0)

    deviation = rng.standard_normal((n, len(VISUAL_PARAMS)))
    outlier = rng.random(n) < cfg.outlier_prob
    deviation[outlier] *= OUTLIER_SCALE
    lo, hi = cfg.seconds
    start = cfg.observed_at - cfg.history_days * 86400
    return VideoDraws(
        category=category,
        author=author,
        sound=sound,
        deviation=deviation,
        outlier=outlier,
        create_time=rng.integers(start, cfg.observed_at - 86400, n),
        frames=rng.integers(max(1, round(lo * cfg.fps)), round(hi * cfg.fps) + 1, n),
        noise=rng.normal(0, LIKES_MODEL["noise_sd"], n),
        trending=trending,
    )


def likes_terms(world: World, draws: VideoDraws) -> dict[str, np.ndarray]:
    """Each additive term of log1p(likes); their sum is the target."""
    m = LIKES_MODEL
    popularity = world.sound_popularity
    sound_pop = np.where(draws.sound >= 0, popularity[np.maximum(draws.sound, 0)], popularity.min())
    followers = np.array([a.followers for a in world.authors])[draws.author]
    age_days = (world.config.observed_at - draws.create_time) / 86400
    return {
        "intercept": np.full(len(draws.category), m["intercept"]),
        "followers": m["log_followers"] * np.log(followers),
        "skill": np.array([a.skill for a in world.authors])[draws.author],
        "category": np.array([c.likes_effect for c in world.categories])[draws.category],
        "sound": m["sound_popularity"] * sound_pop,
        "originality": m["originality"] * draws.originality,
        "age": m["log1p_age_days"] * np.log1p(age_days),
        "noise": draws.noise,
    }


AUTHOR_TERMS = ("followers", "skill")
CONTENT_TERMS = ("category", "sound", "originality")


def bayes_predictors(world: World, draws: VideoDraws, reference: VideoDraws) -> dict[str, np.ndarray]:
    """The Bayes-optimal predictions of log1p(likes) from all, author-only and content-only features.

    Conditional means over what a feature set does not see are exact where the model gives them in
    closed form (P(author | category)), and estimated on the `reference` Monte Carlo draws elsewhere.
    """
    terms = likes_terms(world, draws)
    ref = likes_terms(world, reference)
    k = world.config.categories
    age_mean = ref["age"].mean()
    content_ref = sum(ref[t] for t in CONTENT_TERMS)
    content_mean_by_category = np.array([content_ref[reference.category == c].mean() for c in range(k)])
    author_terms = world.author_terms()
    pa_k = world.author_given_category  # (A, K); categories are uniform, so P(k | a) ∝ P(a | k)
    pk_a = pa_k / pa_k.sum(axis=1, keepdims=True)
    author_mean_by_category = author_terms @ pa_k

    intercept = terms["intercept"]
    known_author = sum(terms[t] for t in AUTHOR_TERMS)
    known_content = sum(terms[t] for t in CONTENT_TERMS)
    return {
        "all": intercept + known_author + known_content + terms["age"],
        "author_only": intercept + known_author + (pk_a @ content_mean_by_category)[draws.author] + age_mean,
        "content_only": intercept + known_content + author_mean_by_category[draws.category] + age_mean,
    }


def r2(y: np.ndarray, prediction: np.ndarray) -> float:
    return float(1 - np.mean((y - prediction) ** 2) / np.var(y))


def bayes_r2(world: World, draws: VideoDraws, monte_carlo: int = 200_000) -> dict[str, dict[str, float]]:
    """Bayes-optimal R² for likes: in the population (Monte Carlo) and on this corpus."""
    rng = np.random.default_rng(np.random.SeedSequence([world.config.seed, 3]))
    reference = draw_videos(world, monte_carlo, rng)
    held_out = draw_videos(world, monte_carlo, rng)
    result = {}
    for name, sample in (("population", held_out), ("corpus", draws)):
        y = sum(likes_terms(world, sample).values())
        result[name] = {
            key: round(r2(y, pred), 4) for key, pred in bayes_predictors(world, sample, reference).items()
        }
    return result
