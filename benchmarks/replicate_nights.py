"""Give a bench lake the ranker examples of a steady-state night: one night's rows under the earlier partitions.

A lake's first night trains its rankers on one night of examples (the earlier partitions do not exist),
but every later night trains on the examples of ``RankingConfig.train_nights`` (14) nights, so the first
night's ``ranker_dataset`` and ``rankers`` figures understate a nightly run 14x in rows. Running 13 more
10M nights to get there takes hours; this copies the examples of ``--day`` (snapshot D - 1) to the
``--nights - 1`` partitions before it, each with its own snapshot day (partition d holds snapshot d - 1),
so ``ranker_dataset`` / ``rankers`` of ``--day`` run on 14 nights of the real night's size. The rows are
the same night's repeated (a real night's would differ; their number, features and labels per query
would not), so the figures are of cost and memory only, never of a model's quality.

    .venv/bin/python benchmarks/replicate_nights.py --lake /tmp/scale/bench/10M --day 2024-02-29
    .venv/bin/python benchmarks/bench_scale.py --events 10M --lake-root /tmp/scale/bench --reuse --assets ranker_dataset,rankers

Refuses to overwrite an earlier partition's examples unless ``--force`` (on a lake whose nights really
ran, they are real).
"""

from __future__ import annotations

import argparse
from datetime import date, timedelta

import polars as pl

from recsys_assets.lib.lake import BlockParquetWriter, Lake, read_parquet
from recsys_assets.lib.ranking.examples import SNAPSHOT_COL
from recsys_assets.lib.ranking.nightly import record_examples_digest
from recsys_assets.lib.snapshot import PROTOCOLS


def replicate(lake: Lake, day: date, nights: int, force: bool = False) -> dict[str, int]:
    """Copy the examples of ``day`` under the ``nights - 1`` partitions before it (snapshot column = each
    partition's day - 1); returns the rows copied per protocol. Raises SystemExit where it would overwrite."""
    copied = {}
    for protocol in PROTOCOLS:
        source = lake.ranker_examples_file(day, protocol)
        if not source.exists():
            raise SystemExit(f"{source} does not exist: run the night of {day} (ranker_examples) first.")
        targets = [(day - timedelta(days=j), lake.ranker_examples_file(day - timedelta(days=j), protocol)) for j in range(1, nights)]
        existing = [str(t) for _, t in targets if t.exists()]
        if existing and not force:
            raise SystemExit(f"{len(existing)} earlier partitions already have examples (e.g. {existing[0]}); --force overwrites them.")
        night = read_parquet(source)
        for d, target in targets:
            target.with_suffix(".json").unlink(missing_ok=True)
            with BlockParquetWriter(target) as out:
                out.write(night.with_columns(pl.lit(d - timedelta(days=1)).alias(SNAPSHOT_COL)))
            record_examples_digest(target)  # as ranker_examples records its file (ranker_dataset keys its nights on it)
        copied[protocol] = night.height
        if targets:
            print(f"{protocol}: {night.height:,} rows of {day} copied under {len(targets)} earlier partitions ({targets[-1][0]}..{targets[0][0]})")
    return copied


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lake", required=True)
    ap.add_argument("--day", required=True, help="the partition whose ranker_examples are copied (YYYY-MM-DD)")
    ap.add_argument("--nights", type=int, default=14, help="nights of examples the day's rankers train on (RankingConfig.train_nights)")
    ap.add_argument("--force", action="store_true", help="overwrite earlier partitions' examples")
    args = ap.parse_args()
    replicate(Lake.at(args.lake), date.fromisoformat(args.day), args.nights, args.force)


if __name__ == "__main__":
    main()
