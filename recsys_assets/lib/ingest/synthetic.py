"""A seeded synthetic world whose item text carries a tunable amount of topic signal.

Why: MovieLens says whether pretrained text encoders help on one real catalog; this world
says *when* they help. Each item has one latent topic, each user a mixture of topics, and
interactions follow ``P(user picks item) ∝ popularity(item) * affinity(user, topic(item))``.
Item text is built from topic-specific SYNONYM SETS (topic "space": galaxy, cosmos, nebula,
...), a few words per item, so two items of the same topic usually share no word: TF-IDF
cannot match them, a sentence encoder that knows "galaxy" ~ "nebula" can. ``text_signal``
is the probability that a text word comes from the item's own topic (otherwise from a
topic drawn uniformly at random), so ``text_signal=0`` makes text independent of topics.

Items can also carry a precomputed ``image_vector`` (``image_dim`` > 0): a stand-in for an
image embedding whose topic signal is a second, independent knob (``image_signal``), so the
fusion ablation can show what an image input adds beyond the text.

Users and items arrive over time (cold start): no event of an item before its
``created_at``, none of a user before the user's arrival.

Everything is vectorized numpy; 10M events take well under a minute and a few hundred MB,
and the events Parquet is written in row groups.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, datetime, timezone

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from recsys_assets.lib.confighash import config_hash
from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.lake import Lake, write_bytes_atomic, write_parquet_atomic


class SyntheticConfigError(RecsysError, ValueError):
    """A SyntheticConfig field is out of range."""


# Topic -> (coarse category, synonym set). Words are real English words with a genuine
# semantic relation inside a topic and none shared across topics.
TOPICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "space": ("science", (
        "galaxy", "cosmos", "astronaut", "nebula", "orbit", "rocket", "planet", "comet", "asteroid",
        "telescope", "spacecraft", "satellite", "lunar", "meteor", "starship", "supernova",
        "interstellar", "cosmonaut", "spacewalk", "constellation", "observatory", "martian",
        "quasar", "stargazing", "moonlanding", "astronomy",
    )),
    "cooking": ("lifestyle", (
        "recipe", "kitchen", "chef", "baking", "oven", "saucepan", "spatula", "dough", "simmer",
        "skillet", "pastry", "broth", "seasoning", "culinary", "roast", "whisk", "casserole",
        "marinade", "cuisine", "dessert", "braise", "cookbook", "grill", "stew", "flour",
    )),
    "ocean": ("nature", (
        "ocean", "sailor", "harbor", "tide", "shipwreck", "coral", "reef", "dolphin", "whale",
        "lighthouse", "anchor", "seaweed", "mariner", "submarine", "lagoon", "shoreline", "surf",
        "nautical", "trawler", "seashell", "starfish", "jellyfish", "kelp", "seafarer", "undersea",
    )),
    "music": ("entertainment", (
        "melody", "guitar", "orchestra", "symphony", "concert", "drummer", "piano", "chorus",
        "violin", "lyrics", "rhythm", "saxophone", "album", "conductor", "harmony", "trumpet",
        "songwriter", "ballad", "opera", "tempo", "cello", "jazz", "choir", "guitarist", "sonata",
    )),
    "sports": ("leisure", (
        "stadium", "goalkeeper", "referee", "tournament", "athlete", "coach", "championship",
        "league", "penalty", "striker", "jersey", "scoreboard", "playoff", "trophy", "midfielder",
        "dribble", "touchdown", "quarterback", "sprinter", "marathon", "hurdles", "olympics",
        "teammate", "halftime", "slamdunk",
    )),
    "medicine": ("science", (
        "hospital", "doctor", "nurse", "surgeon", "clinic", "vaccine", "diagnosis", "patient",
        "prescription", "therapy", "ambulance", "stethoscope", "surgery", "pharmacy", "symptom",
        "antibiotic", "cardiology", "infection", "bandage", "paramedic", "medication", "physician",
        "immunity", "pediatrician", "anesthesia",
    )),
    "finance": ("society", (
        "investor", "stock", "dividend", "portfolio", "banker", "mortgage", "loan", "equity",
        "shareholder", "budget", "inflation", "currency", "bond", "brokerage", "savings", "ledger",
        "accountant", "taxes", "revenue", "profit", "credit", "bankruptcy", "banking", "stockbroker",
        "recession",
    )),
    "gardening": ("lifestyle", (
        "garden", "tulip", "seedling", "compost", "shovel", "blossom", "greenhouse", "fertilizer",
        "pruning", "soil", "daisy", "lawn", "flowerbed", "sunflower", "trowel", "weeding",
        "perennial", "mulch", "botanical", "sprout", "gardener", "petunia", "rosebush", "hedgerow",
        "bulbs",
    )),
    "crime": ("society", (
        "detective", "murder", "suspect", "alibi", "clue", "forensic", "sheriff", "robbery",
        "investigation", "prosecutor", "fingerprint", "heist", "gangster", "homicide", "culprit",
        "interrogation", "witness", "burglar", "evidence", "verdict", "mobster", "smuggler",
        "kidnapping", "criminal", "sleuth",
    )),
    "romance": ("entertainment", (
        "romance", "wedding", "kiss", "sweetheart", "valentine", "courtship", "bride", "honeymoon",
        "darling", "lover", "passion", "flirt", "proposal", "engagement", "soulmate", "crush",
        "affection", "heartthrob", "embrace", "newlyweds", "beloved", "devotion", "romantic",
        "marriage", "infatuation",
    )),
    "military": ("society", (
        "soldier", "battlefield", "army", "infantry", "tank", "regiment", "artillery", "trench",
        "sergeant", "platoon", "veteran", "invasion", "bomber", "warship", "rifle", "combat",
        "commander", "cavalry", "ammunition", "siege", "troops", "admiral", "garrison", "warfare",
        "battalion",
    )),
    "wildlife": ("nature", (
        "lion", "tiger", "elephant", "giraffe", "safari", "zebra", "jungle", "predator", "savanna",
        "antelope", "rhinoceros", "leopard", "gorilla", "cheetah", "hippopotamus", "wildlife",
        "herd", "zoologist", "poacher", "crocodile", "buffalo", "chimpanzee", "hyena", "wilderness",
        "rainforest",
    )),
    "computing": ("science", (
        "software", "computer", "algorithm", "programmer", "laptop", "database", "server",
        "keyboard", "internet", "processor", "coding", "debugging", "website", "smartphone",
        "cybersecurity", "hacker", "bandwidth", "silicon", "microchip", "developer", "spreadsheet",
        "browser", "router", "encryption", "compiler",
    )),
    "horror": ("entertainment", (
        "ghost", "vampire", "haunted", "zombie", "werewolf", "demon", "witch", "graveyard",
        "skeleton", "phantom", "poltergeist", "nightmare", "coffin", "exorcist", "spooky",
        "cemetery", "curse", "occult", "tombstone", "banshee", "ghoul", "seance", "creepy",
        "undead", "possessed",
    )),
    "travel": ("leisure", (
        "tourist", "passport", "airport", "suitcase", "luggage", "hotel", "itinerary",
        "sightseeing", "vacation", "backpacker", "souvenir", "resort", "boarding", "departure",
        "postcard", "hostel", "excursion", "traveler", "jetlag", "guidebook", "visa", "destination",
        "holiday", "sightseer", "layover",
    )),
    "weather": ("nature", (
        "thunderstorm", "hurricane", "rainfall", "blizzard", "forecast", "tornado", "drizzle",
        "humidity", "snowfall", "lightning", "thunder", "meteorologist", "monsoon", "hailstorm",
        "breeze", "cyclone", "drought", "frost", "fog", "sleet", "rainbow", "overcast", "barometer",
        "downpour", "heatwave",
    )),
    "education": ("society", (
        "classroom", "teacher", "student", "homework", "textbook", "exam", "lecture", "professor",
        "school", "curriculum", "diploma", "chalkboard", "tutor", "semester", "graduation", "pupil",
        "campus", "syllabus", "kindergarten", "quiz", "headmaster", "scholarship", "tuition",
        "schoolteacher", "lesson",
    )),
}  # fmt: skip
TOPIC_NAMES: tuple[str, ...] = tuple(TOPICS)

# Topic-neutral filler that makes the text read like text; shared by all topics.
FILLER_ADJECTIVES = ("silent", "golden", "hidden", "little", "last", "bright", "secret", "endless", "first", "quiet", "bold", "modern")
FILLER_NOUNS = ("story", "tale", "collection", "chronicle", "portrait", "study", "account", "edition", "guide", "companion")
PROFILE_OPENERS = ("Enjoys", "Interested in", "Likes", "Fan of", "Curious about")

EVENT_FUNNEL = ("view", "click", "cart", "purchase")
# Session depth 1..4 (view; view+click; +cart; +purchase): ~71% view, 18% click, 7% cart, 4% purchase.
FUNNEL_DEPTH_P = np.array([0.75, 0.15, 0.05, 0.05])
SECONDS_PER_DAY = 86_400
_CHUNK = 1_000_000  # events per Parquet row group

SHOP_EVENTS_PER_USER = 33
"""Default shape of a shop-like world: ~33 events per user over the history (10M events -> ~300k users)."""
SHOP_EVENTS_PER_ITEM = 200
"""Default shape of a shop-like world: ~200 events per item (10M events -> 50k items)."""
SHOP_MIN_USERS, SHOP_MIN_ITEMS = 2_000, 1_000
"""Floors, so that small worlds (<= 66k events) keep the historical 2,000 x 1,000 shape."""


def shop_shape(n_events: int, n_users: int | None = None, n_items: int | None = None) -> tuple[int, int]:
    """(users, items) of a shop-like world of ``n_events`` events; an explicit value wins.

    A real shop grows its users and catalogue with its traffic: a 10M-event world has
    ~300k users and 50k items (``SHOP_EVENTS_PER_USER``, ``SHOP_EVENTS_PER_ITEM``), with
    the Zipf long tail, lognormal user activity and daily arrivals of :class:`SyntheticConfig`.
    """
    users = n_users if n_users is not None else max(SHOP_MIN_USERS, round(n_events / SHOP_EVENTS_PER_USER))
    items = n_items if n_items is not None else max(SHOP_MIN_ITEMS, round(n_events / SHOP_EVENTS_PER_ITEM))
    return users, items
_PICK_CHUNK = 200_000  # sessions per vectorized item draw (a few (chunk x n_topics) matrices)


@dataclass(frozen=True)
class SyntheticConfig:
    """Shape of the synthetic world (all defaults give a small, quick world)."""

    n_users: int = 2_000
    """Number of users (each arrives on some day; some already present on day 0)."""

    n_items: int = 1_000
    """Number of items (each has a ``created_at``; some exist before day 0)."""

    n_events: int = 100_000
    """Exact number of events written (10,000 .. 10,000,000)."""

    n_topics: int = 12
    """Latent topics used (2 .. len(TOPICS)=17); each item has one, each user a mixture."""

    start_day: str = "2024-01-01"
    """First day with events (ISO date, UTC)."""

    n_days: int = 60
    """Number of days with events."""

    text_signal: float = 0.8
    """Probability that a text word / category comes from the item's (user's) own topic; 0 = no signal."""

    seed: int = 0
    """Seed of every random draw: same config -> byte-identical files."""

    profile_fraction: float = 0.5
    """Share of users that have profile text (the rest have none)."""

    words_per_item: int = 3
    """Topic words in an item's text (1 in the title, the rest in the description); few keeps same-topic items word-disjoint."""

    popularity_exponent: float = 0.8
    """Zipf exponent of item popularity (weight = rank^-exponent over a random ranking)."""

    topic_concentration: float = 0.2
    """Dirichlet concentration of user topic mixtures; small = users focused on few topics."""

    initial_item_fraction: float = 0.6
    """Share of items created before ``start_day`` (the rest arrive uniformly over the days)."""

    initial_user_fraction: float = 0.5
    """Share of users present on ``start_day`` (the rest arrive uniformly over the days)."""

    image_dim: int = 0
    """Length of every item's precomputed ``image_vector``; 0 = items carry none."""

    image_signal: float = 0.0
    """Topic signal of the image vectors, 0..1: the vector is ``sqrt(s) * c_topic + sqrt(1 - s) * noise``
    (unit random directions), so same-topic items' image vectors have an expected cosine of ``s`` and
    items of different topics ~0; 0 = images independent of topics."""

    def __post_init__(self) -> None:
        def need(ok: bool, field: str, what: str) -> None:
            if not ok:
                raise SyntheticConfigError(f"SyntheticConfig.{field}={getattr(self, field)!r}: {what}")

        need(isinstance(self.n_users, int) and self.n_users >= 1, "n_users", "must be an int >= 1")
        need(isinstance(self.n_items, int) and self.n_items >= 1, "n_items", "must be an int >= 1")
        need(isinstance(self.n_events, int) and 10_000 <= self.n_events <= 10_000_000, "n_events", "must be an int in 10,000..10,000,000")
        need(isinstance(self.n_topics, int) and 2 <= self.n_topics <= len(TOPICS), "n_topics", f"must be an int in 2..{len(TOPICS)}")
        need(isinstance(self.n_days, int) and self.n_days >= 1, "n_days", "must be an int >= 1")
        need(0.0 <= self.text_signal <= 1.0, "text_signal", "must be in 0..1")
        need(0.0 <= self.profile_fraction <= 1.0, "profile_fraction", "must be in 0..1")
        need(isinstance(self.words_per_item, int) and 1 <= self.words_per_item <= 12, "words_per_item", "must be an int in 1..12")
        need(self.popularity_exponent >= 0.0, "popularity_exponent", "must be >= 0")
        need(self.topic_concentration > 0.0, "topic_concentration", "must be > 0")
        need(0.0 <= self.initial_item_fraction <= 1.0, "initial_item_fraction", "must be in 0..1")
        need(0.0 <= self.initial_user_fraction <= 1.0, "initial_user_fraction", "must be in 0..1")
        need(isinstance(self.image_dim, int) and 0 <= self.image_dim <= 4096, "image_dim", "must be an int in 0..4096")
        need(0.0 <= self.image_signal <= 1.0, "image_signal", "must be in 0..1")
        try:
            date.fromisoformat(self.start_day)
        except (TypeError, ValueError):
            need(False, "start_day", "must be an ISO date like 2024-01-01")

    @property
    def start(self) -> date:
        return date.fromisoformat(self.start_day)

    def config_hash(self) -> str:
        return config_hash(self)


# --- helpers ------------------------------------------------------------------------------------


def _ids(prefix: str, n: int) -> list[str]:
    width = len(str(max(n - 1, 0)))
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


def _id_series(prefix: str, idx: np.ndarray, n: int) -> pl.Series:
    width = len(str(max(n - 1, 0)))
    return pl.Series(idx, dtype=pl.Int64).cast(pl.String).str.zfill(width).str.replace(r"^", prefix)


def _article(word: str) -> str:
    return "An" if word[0] in "aeiou" else "A"


def _iso_strings(epoch_s: np.ndarray) -> pl.Series:
    """Epoch seconds -> "2024-01-03T05:06:07+00:00"."""
    return pl.from_epoch(pl.Series(epoch_s, dtype=pl.Int64), time_unit="s").dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _text_topics(rng: np.random.Generator, own: np.ndarray, n_words: int, n_topics: int, signal: float) -> np.ndarray:
    """Topic of each text word: own topic w.p. ``signal``, else uniform over all topics."""
    keep = rng.random((own.size, n_words)) < signal
    noise = rng.integers(0, n_topics, size=(own.size, n_words))
    return np.where(keep, own[:, None], noise)


def _words_for(rng: np.random.Generator, topics: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """A synonym of each topic in ``topics`` (any shape), uniformly from its set."""
    sets = [TOPICS[n][1] for n in names]
    sizes = np.array([len(s) for s in sets])
    flat = np.array([w for s in sets for w in s], dtype=object)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pick = (rng.random(topics.shape) * sizes[topics]).astype(np.int64)
    if topics.ndim == 2:
        # No word twice in one text: redraw a slot that repeats an earlier slot's word.
        for j in range(1, topics.shape[1]):
            for _ in range(50):
                dup = np.zeros(topics.shape[0], dtype=bool)
                for prev in range(j):
                    dup |= (topics[:, prev] == topics[:, j]) & (pick[:, prev] == pick[:, j])
                if not dup.any():
                    break
                pick[dup, j] = (rng.random(int(dup.sum())) * sizes[topics[dup, j]]).astype(np.int64)
    return flat[offsets[topics] + pick]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _image_vectors(cfg: SyntheticConfig, item_topic: np.ndarray) -> np.ndarray:
    """``(n_items, image_dim)`` float32: ``sqrt(s) * c_topic + sqrt(1-s) * noise``, both unit directions.

    Drawn from a seed stream of their own (the 7th child of ``seed``), so switching images on
    leaves every other column and every event of the world unchanged.
    """
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(7)[6])
    centroids = _unit_rows(rng.standard_normal((cfg.n_topics, cfg.image_dim)))
    noise = _unit_rows(rng.standard_normal((item_topic.size, cfg.image_dim)))
    s = cfg.image_signal
    return (np.sqrt(s) * centroids[item_topic] + np.sqrt(1.0 - s) * noise).astype(np.float32)


def _start_epoch(cfg: SyntheticConfig) -> int:
    return int(datetime(cfg.start.year, cfg.start.month, cfg.start.day, tzinfo=timezone.utc).timestamp())


# --- the world ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticWorld:
    """The generated world (before it is written)."""

    items: pl.DataFrame
    """Landing items: item_id, title, description, categories, created_at (ISO), image_vector when ``image_dim`` > 0."""

    users: pl.DataFrame
    """Landing users: user_id, profile (null for users without text)."""

    item_truth: pl.DataFrame
    """item_id, topic, created_ts (epoch s), popularity."""

    user_truth: pl.DataFrame
    """user_id, main_topic, arrival_ts (epoch s), activity."""


def _build_catalog(cfg: SyntheticConfig, rngs: list[np.random.Generator]) -> tuple[SyntheticWorld, dict[str, np.ndarray]]:
    r_items, r_users, r_text = rngs
    names = TOPIC_NAMES[: cfg.n_topics]
    k = cfg.n_topics
    t0 = _start_epoch(cfg)
    t_end = t0 + cfg.n_days * SECONDS_PER_DAY

    # Items: topic, Zipf popularity over a random ranking, created_at.
    item_topic = r_items.integers(0, k, size=cfg.n_items)
    ranks = r_items.permutation(cfg.n_items) + 1
    popularity = ranks.astype(np.float64) ** (-cfg.popularity_exponent)
    initial = r_items.random(cfg.n_items) < cfg.initial_item_fraction
    initial[int(np.argmax(popularity))] = True  # something exists from the first second
    before = t0 - r_items.integers(1, 180 * SECONDS_PER_DAY, size=cfg.n_items)
    during = t0 + r_items.integers(0, t_end - t0, size=cfg.n_items)
    created = np.where(initial, before, during).astype(np.int64)

    # Users: topic mixture (Dirichlet + a small floor so nobody has a zero affinity), arrival, activity.
    theta = r_users.dirichlet(np.full(k, cfg.topic_concentration), size=cfg.n_users)
    theta = 0.97 * theta + 0.03 / k
    main_topic = theta.argmax(axis=1)
    present = r_users.random(cfg.n_users) < cfg.initial_user_fraction
    arrival = np.where(present, t0, t0 + r_users.integers(0, t_end - t0, size=cfg.n_users)).astype(np.int64)
    activity = r_users.lognormal(0.0, 1.0, size=cfg.n_users)
    has_profile = r_users.random(cfg.n_users) < cfg.profile_fraction

    # Item text: title "<Adjective> <Word>", description "A <noun> about <w>, <w> and <w>."
    wt = _text_topics(r_text, item_topic, cfg.words_per_item, k, cfg.text_signal)
    words = _words_for(r_text, wt, names)
    adjectives = np.array(FILLER_ADJECTIVES, dtype=object)[r_text.integers(0, len(FILLER_ADJECTIVES), size=cfg.n_items)]
    nouns = np.array(FILLER_NOUNS, dtype=object)[r_text.integers(0, len(FILLER_NOUNS), size=cfg.n_items)]
    cat_topic = _text_topics(r_text, item_topic, 1, k, cfg.text_signal)[:, 0]
    categories = [TOPICS[names[t]][0] for t in cat_topic]
    titles, descriptions = [], []
    for i in range(cfg.n_items):
        w = list(words[i])
        titles.append(f"{adjectives[i].capitalize()} {w[0].capitalize()}")
        rest = w[1:]
        if not rest:
            descriptions.append(f"{_article(nouns[i])} {nouns[i]}.")
        elif len(rest) == 1:
            descriptions.append(f"{_article(nouns[i])} {nouns[i]} about {rest[0]}.")
        else:
            descriptions.append(f"{_article(nouns[i])} {nouns[i]} about {', '.join(rest[:-1])} and {rest[-1]}.")

    # User profile text from the main topic, same signal knob.
    pt = _text_topics(r_text, main_topic, 3, k, cfg.text_signal)
    pwords = _words_for(r_text, pt, names)
    openers = np.array(PROFILE_OPENERS, dtype=object)[r_text.integers(0, len(PROFILE_OPENERS), size=cfg.n_users)]
    profiles = [f"{openers[u]} {pwords[u, 0]}, {pwords[u, 1]} and {pwords[u, 2]}." if has_profile[u] else None for u in range(cfg.n_users)]

    item_ids = _ids("i", cfg.n_items)
    user_ids = _ids("u", cfg.n_users)
    items = pl.DataFrame(
        {
            "item_id": item_ids,
            "title": titles,
            "description": descriptions,
            "categories": [[c] for c in categories],
            "created_at": _iso_strings(created),
        },
        schema={"item_id": pl.String, "title": pl.String, "description": pl.String, "categories": pl.List(pl.String), "created_at": pl.String},
    )
    if cfg.image_dim:
        # Rounded: the landing file is JSON text and 6 decimals keep it small and byte-stable.
        images = np.round(_image_vectors(cfg, item_topic).astype(np.float64), 6)
        items = items.with_columns(pl.Series("image_vector", images.tolist(), dtype=pl.List(pl.Float32)))
    users = pl.DataFrame({"user_id": user_ids, "profile": profiles}, schema={"user_id": pl.String, "profile": pl.String})
    item_truth = pl.DataFrame(
        {"item_id": item_ids, "topic": [names[t] for t in item_topic], "created_ts": created, "popularity": popularity}
    )
    user_truth = pl.DataFrame(
        {"user_id": user_ids, "main_topic": [names[t] for t in main_topic], "arrival_ts": arrival, "activity": activity}
    )
    arrays = {
        "item_topic": item_topic,
        "popularity": popularity,
        "created": created,
        "theta": theta,
        "arrival": arrival,
        "activity": activity,
        "t_end": np.int64(t_end),
    }
    return SyntheticWorld(items, users, item_truth, user_truth), arrays


def _sessions(cfg: SyntheticConfig, a: dict[str, np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, start ts, depth) of just enough sessions for ``n_events``, sorted by time; depth of the last trimmed."""
    mean_len = float(np.dot(FUNNEL_DEPTH_P, np.arange(1, 5)))
    n_s = int(cfg.n_events / mean_len * 1.05) + 64
    while True:
        depth = rng.choice(4, size=n_s, p=FUNNEL_DEPTH_P) + 1
        total = np.cumsum(depth)
        if total[-1] >= cfg.n_events:
            break
        n_s *= 2  # practically never (5 % headroom), but keep it exact
    n_keep = int(np.searchsorted(total, cfg.n_events)) + 1
    depth = depth[:n_keep].copy()
    depth[-1] -= int(total[n_keep - 1] - cfg.n_events)

    # A user's session count ∝ activity * time present, uniformly over [arrival, end).
    t_end = int(a["t_end"])
    span = (t_end - a["arrival"]).astype(np.float64)
    w = a["activity"] * span
    user = rng.choice(w.size, size=n_keep, p=w / w.sum())
    ts = a["arrival"][user] + (rng.random(n_keep) * span[user]).astype(np.int64)
    order = np.argsort(ts, kind="stable")
    return user[order], ts[order], depth[order]


def _pick_items(cfg: SyntheticConfig, a: dict[str, np.ndarray], user: np.ndarray, ts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Item of each session: P(i) ∝ popularity(i) * theta[user, topic(i)] over items created by ts.

    Exact two-step draw: topic k ∝ theta[u,k] * S_k(ts) (S_k = popularity mass of topic k's
    items created by ts), then an item of k ∝ popularity among those, via one searchsorted
    over cumulative popularity of items sorted by (topic, created).
    """
    k = cfg.n_topics
    topic, created, pop = a["item_topic"], a["created"], a["popularity"]
    order = np.lexsort((np.arange(topic.size), created, topic))  # by topic, then created, then id
    s_topic, s_created, s_pop = topic[order], created[order], pop[order]
    cum = np.cumsum(s_pop)
    bounds = np.searchsorted(s_topic, np.arange(k + 1))  # segment [bounds[k], bounds[k+1]) per topic
    base = np.concatenate([[0.0], cum])[bounds[:-1]]  # cum before each segment
    out = np.empty(user.size, dtype=np.int64)
    for lo in range(0, user.size, _PICK_CHUNK):
        hi = min(lo + _PICK_CHUNK, user.size)
        t = ts[lo:hi]
        n_avail = np.empty((hi - lo, k), dtype=np.int64)
        for j in range(k):
            n_avail[:, j] = np.searchsorted(s_created[bounds[j] : bounds[j + 1]], t, side="right")
        last = bounds[:-1][None, :] + n_avail  # exclusive end in the sorted arrays
        mass = np.concatenate([[0.0], cum])[last] - base[None, :]
        w = a["theta"][user[lo:hi]] * mass
        cw = np.cumsum(w, axis=1)
        r = rng.random(hi - lo) * cw[:, -1]
        chosen = (cw <= r[:, None]).sum(axis=1)
        chosen = np.minimum(chosen, k - 1)
        # within topic: position of base + u * mass in the global cumulative array
        target = base[chosen] + rng.random(hi - lo) * mass[np.arange(hi - lo), chosen]
        pos = np.searchsorted(cum, target, side="right")
        pos = np.clip(pos, bounds[chosen], last[np.arange(hi - lo), chosen] - 1)
        out[lo:hi] = order[pos]
    return out


def _event_chunks(cfg: SyntheticConfig, a: dict[str, np.ndarray], rng_sessions: np.random.Generator, rng_items: np.random.Generator, rng_funnel: np.random.Generator):
    """Yield events as polars frames (``_CHUNK`` rows at most), sorted by ts."""
    user, ts, depth = _sessions(cfg, a, rng_sessions)
    item = _pick_items(cfg, a, user, ts, rng_items)
    t_end = int(a["t_end"])
    # Expand sessions into funnel steps, each 5 s .. 5 min after the previous one.
    first = np.cumsum(depth) - depth  # index of each session's first event
    sess = np.repeat(np.arange(user.size, dtype=np.int32), depth)
    step = (np.arange(sess.size, dtype=np.int32) - np.repeat(first.astype(np.int32), depth)).astype(np.int8)
    gap = rng_funnel.integers(5, 300, size=sess.size, dtype=np.int32)
    gap[first] = 0
    offset = np.cumsum(gap, dtype=np.int64)
    del gap
    offset -= np.repeat(offset[first], depth)
    ev_ts = np.minimum(ts[sess] + offset, t_end - 1)
    del offset
    order = np.argsort(ev_ts, kind="stable")
    funnel = np.array(EVENT_FUNNEL)
    for lo in range(0, order.size, _CHUNK):
        o = order[lo : lo + _CHUNK]
        s = sess[o]
        yield pl.DataFrame(
            {
                "user_id": _id_series("u", user[s], cfg.n_users),
                "item_id": _id_series("i", item[s], cfg.n_items),
                "event_type": pl.Series(funnel[step[o]], dtype=pl.String),
                "ts": pl.Series(ev_ts[o], dtype=pl.Int64),
            }
        )


def build_synthetic_world(config: SyntheticConfig) -> SyntheticWorld:
    """Items, users and ground truth for ``config`` (no events; cheap)."""
    seq = np.random.SeedSequence(config.seed)
    world, _ = _build_catalog(config, [np.random.default_rng(s) for s in seq.spawn(6)[:3]])
    return world


def generate_synthetic_world(lake: Lake, config: SyntheticConfig) -> dict:
    """Write ``synthetic.parquet`` / ``.items.jsonl`` / ``.users.jsonl`` landing files and the truth.

    Also writes ``cache/synthetic_truth/items.parquet`` (item_id, topic, created_ts, popularity)
    and ``users.parquet`` (user_id, main_topic, arrival_ts, activity). Returns counts, paths,
    the config hash and ``item_truth`` (a frame of item_id, topic). Deterministic for a config.
    """
    # Independent streams: changing n_events leaves catalog and text unchanged.
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(6)]
    world, arrays = _build_catalog(config, streams[:3])

    events_path = lake.landing_dir("events").joinpath("synthetic.parquet")
    items_path = lake.landing_dir("items").joinpath("synthetic.items.jsonl")
    users_path = lake.landing_dir("users").joinpath("synthetic.users.jsonl")
    truth_dir = lake.synthetic_truth_dir

    buf = io.BytesIO()
    writer: pq.ParquetWriter | None = None
    counts = dict.fromkeys(EVENT_FUNNEL, 0)
    n_written = 0
    for chunk in _event_chunks(config, arrays, streams[3], streams[4], streams[5]):
        table = chunk.to_arrow()
        if writer is None:
            writer = pq.ParquetWriter(buf, table.schema, compression="zstd", compression_level=3)
        writer.write_table(table, row_group_size=_CHUNK)
        n_written += chunk.height
        for name, n in chunk["event_type"].value_counts().iter_rows():
            counts[name] += n
    assert writer is not None and n_written == config.n_events
    writer.close()
    write_bytes_atomic(events_path, buf.getvalue())
    del buf
    write_bytes_atomic(items_path, world.items.write_ndjson().encode("utf-8"))
    write_bytes_atomic(users_path, world.users.write_ndjson().encode("utf-8"))
    write_parquet_atomic(world.item_truth, truth_dir.joinpath("items.parquet"))
    write_parquet_atomic(world.user_truth, truth_dir.joinpath("users.parquet"))
    return {
        "events": n_written,
        "items": world.items.height,
        "users": world.users.height,
        "users_with_profile": int(world.users["profile"].is_not_null().sum()),
        "event_types": counts,
        "config_hash": config.config_hash(),
        "paths": {"events": str(events_path), "items": str(items_path), "users": str(users_path), "truth": str(truth_dir)},
        "item_truth": world.item_truth.select("item_id", "topic"),
    }
