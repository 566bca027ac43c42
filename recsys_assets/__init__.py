"""Nightly cold-start lift pipeline (Dagster assets over a Parquet/DuckDB lake)."""

import os

# implicit's ALS and torch each bring their own thread pools; on small machines
# OpenBLAS threads inside implicit's own threads oversubscribe the cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
