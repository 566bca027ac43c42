"""Re-run the ranking stage and the evaluation of a window on an existing lake's feature artifacts.

For the gate before/after (docs/ranker.md): the feature stage (ALS, embeddings, profiles,
content->CF) is untouched by the ranker change, so the window's serve-stage artifacts of a
lake that already ran the window (``--src``) are reused, and only what the ranker change
affects is recomputed with the same library calls as the assets (``bench_night.RawNight``):

1. copy the source lake's events, catalogues, caches and, for every window day and every
   warm-up day it has, its embeddings, serve-stage models and candidate pool into ``--lake``;
2. warm-up: for the ``--warmup`` days before the window that the source lake has no serve
   artifacts for, the serve-stage features (``item_embeddings``, ``als_model``, ``content_to_cf``,
   ``user_profiles`` restricted to the serve views);
3. every partition P from the first warm-up day + 1 to the window end: the train stage of P is
   the snapshot P - 1 (``label_window_days`` = 1), i.e. the serve artifacts of P - 1 (copied,
   not refit: the same events and settings) -> ``ranker_examples``;
4. every window day: ``ranker_dataset``, ``rankers``, ``recommendations``, ``cold_start_eval``
   (per-user metrics; the report assets are not needed by the gate).

Then ``benchmarks/bench_gate.py --lake LAKE`` prints the gate. Wall and CPU seconds per step
are printed.

    .venv/bin/python benchmarks/gate_rerun.py --src /tmp/ranker/before100k --lake /tmp/r2/gate100k --start 1998-03-27 --end 1998-04-16
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import date, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

from bench_night import RawNight  # noqa: E402

from recsys_assets.lib.ranking.config import RankingConfig  # noqa: E402

SHARED = ("events", "items", "users", "landing", "cache", "embeddings")


class ServeOnlyNight(RawNight):
    """The feature calls of a night restricted to its serve views (warm-up snapshots)."""

    def _views(self):
        return self._snapshot().views("serve")


def _copy(src: Path, dst: Path) -> None:
    if not src.exists() or dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    (shutil.copytree if src.is_dir() else shutil.copy2)(src.resolve(), dst)


def setup(src: Path, lake: Path, days: list[date], protocols: tuple[str, ...]) -> None:
    for name in SHARED:
        _copy(src / name, lake / name)
    for d in days:
        snap = f"snapshot={d.isoformat()}"
        _copy(src / "models" / snap / "embeddings", lake / "models" / snap / "embeddings")
        for p in protocols:
            _copy(src / "models" / snap / p / "serve", lake / "models" / snap / p / "serve")
            _copy(src / "recs" / f"day={d.isoformat()}" / p / "candidates.parquet", lake / "recs" / f"day={d.isoformat()}" / p / "candidates.parquet")


def serve_as_train(lake: Path, partition: date, protocols: tuple[str, ...]) -> None:
    """train stage of P := serve stage of P - 1 (the same snapshot when label_window_days = 1)."""
    for p in protocols:
        src = lake / "models" / f"snapshot={(partition - timedelta(days=1)).isoformat()}" / p / "serve"
        dst = lake / "models" / f"snapshot={partition.isoformat()}" / p / "train"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
    emb_src = lake / "models" / f"snapshot={partition.isoformat()}" / "embeddings"
    if not emb_src.exists():
        shutil.copytree(lake / "models" / f"snapshot={(partition - timedelta(days=1)).isoformat()}" / "embeddings", emb_src)


def timed(label: str, fn) -> None:
    w, c = time.perf_counter(), time.process_time()
    fn()
    print(f"{label}: {time.perf_counter() - w:.1f}s wall, {time.process_time() - c:.1f} CPU-s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", required=True, type=Path)
    ap.add_argument("--lake", required=True, type=Path)
    ap.add_argument("--start", required=True, type=date.fromisoformat)
    ap.add_argument("--end", required=True, type=date.fromisoformat)
    ap.add_argument("--warmup", type=int, default=RankingConfig().train_nights, help="days before the window given serve features (default: train_nights)")
    ap.add_argument("--only-warmup", action="store_true", help="stop after the warm-up features")
    args = ap.parse_args()
    k = args.warmup
    window = [args.start + timedelta(days=i) for i in range((args.end - args.start).days + 1)]
    warm = [args.start - timedelta(days=j) for j in range(k, 0, -1)]
    probe = RawNight(str(args.lake), args.start) if args.lake.exists() else None
    protocols = probe.cfg.protocol.protocols if probe else ("temporal", "item_holdout")
    # Days before the window whose serve artifacts the source lake already has are copied too.
    setup(args.src, args.lake, warm + window, protocols)
    for d in warm:
        if not (args.lake / "models" / f"snapshot={d.isoformat()}" / protocols[0] / "serve" / "als").exists():
            night = ServeOnlyNight(str(args.lake), d)
            timed(f"{d} warm-up serve features", lambda: night.run(("item_embeddings", "als_model", "content_to_cf", "user_profiles")))
    if args.only_warmup:
        return
    for d in warm[1:] + window:
        serve_as_train(args.lake, d, protocols)
        timed(f"{d} ranker_examples", lambda: RawNight(str(args.lake), d).run(("ranker_examples",)))
    for d in window:
        night = RawNight(str(args.lake), d)
        for step in ("ranker_dataset", "rankers", "recommendations", "cold_start_eval"):
            timed(f"{d} {step}", lambda: night.run((step,)))


if __name__ == "__main__":
    main()
