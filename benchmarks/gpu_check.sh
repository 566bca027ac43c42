#!/usr/bin/env bash
# The GPU paths of the pipeline, measured in one short run (< 5 minutes on a GPU machine):
#   1. encode throughput of the default text encoder (minilm-l6): fp32, bf16 (the project's
#      `precision=bf16`) and fp16 (the model cast to half), texts/s;
#   2. ALS fit with implicit (its CUDA solver when `implicit.gpu.HAS_CUDA`, i.e. rmm-cu13 is
#      installed and a GPU is visible; else the CPU solver, said so) on a shop-sized matrix;
#   3. scoring: every user against every item in blocks with the project's one top-k routine
#      (recsys_assets.lib.topk.top_k_rows on torch tensors on the GPU), never a dense matrix;
#   4. LightGBM: whether the installed wheel trains with device_type=cuda / gpu (OpenCL).
#
#   benchmarks/gpu_check.sh            # full sizes (300k users, 50k items, 10M interactions)
#   benchmarks/gpu_check.sh --dry-run  # tiny sizes on whatever device there is (a CPU check of the script)
#
# Prints one line per measurement and a JSON summary (also written to $OUT/gpu_check.json when
# $OUT is set, else benchmarks/results/gpu_check.json). Tests never depend on this script.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
export OPENBLAS_NUM_THREADS=1
exec timeout 290 "$PY" - "$DRY" <<'EOF'
import json, os, sys, time
import numpy as np

dry = sys.argv[1] == "1"
out = {"dry_run": dry}
t_start = time.perf_counter()

import torch
cuda = torch.cuda.is_available()
dev = "cuda" if cuda else "cpu"
out["device"] = torch.cuda.get_device_name(0) if cuda else "cpu (no CUDA device visible to torch)"
print(f"device: {out['device']}; torch {torch.__version__}", flush=True)

def sync():
    if cuda:
        torch.cuda.synchronize()

# --- 1. encoder throughput ---------------------------------------------------------------------
from recsys_assets.lib.features.encoders import EncoderConfig, get_encoder
from recsys_assets.lib.ingest.synthetic import SyntheticConfig, build_synthetic_world

n_texts = 300 if dry else 50_000
world = build_synthetic_world(SyntheticConfig(n_items=n_texts, n_users=2_000, n_events=10_000))
texts = (world.items["title"] + ". " + world.items["description"]).to_list()
enc_out = {}
for precision in ("fp32", "bf16", "fp16"):
    if precision == "fp16" and not cuda:
        enc_out[precision] = "skipped: fp16 inference needs a GPU"
        print(f"encode minilm-l6 {precision}: {enc_out[precision]}", flush=True)
        continue
    enc = get_encoder("minilm-l6", EncoderConfig(device=dev, precision="bf16" if precision == "bf16" else "fp32", batch_size=256 if cuda else 64, show_progress=False))
    if precision == "fp16":
        enc.model.half()
    enc.encode(texts[:64])  # warm-up (kernels, allocator)
    sync()
    t0 = time.perf_counter()
    v = enc.encode(texts)
    sync()
    dt = time.perf_counter() - t0
    if precision == "fp16":
        enc.model.float()
    enc_out[precision] = {"texts": len(texts), "seconds": round(dt, 3), "texts_per_s": round(len(texts) / dt, 1), "dim": int(v.shape[1])}
    print(f"encode minilm-l6 {precision}: {len(texts):,} texts in {dt:.2f} s = {len(texts) / dt:,.0f} texts/s", flush=True)
out["encode"] = enc_out

# --- 2. ALS fit --------------------------------------------------------------------------------
import scipy.sparse as sp
from recsys_assets.lib.features.als import ALSConfig, fit_matrix, gpu_available

n_users, n_items, nnz = (5_000, 1_000, 100_000) if dry else (300_000, 50_000, 10_000_000)
rng = np.random.default_rng(0)
pop = (rng.permutation(n_items) + 1.0) ** -0.8
rows = rng.integers(0, n_users, nnz)
cols = rng.choice(n_items, nnz, p=pop / pop.sum())
mat = sp.csr_matrix((np.ones(nnz, np.float32), (rows, cols)), shape=(n_users, n_items))
mat.sum_duplicates()
use_gpu = gpu_available()
cfg = ALSConfig(factors=64, iterations=15, use_gpu=use_gpu)
t0 = time.perf_counter()
uf, itf = fit_matrix(mat, cfg)
dt = time.perf_counter() - t0
out["als"] = {"solver": "implicit CUDA" if use_gpu else "implicit CPU (implicit.gpu.HAS_CUDA is False: install rmm-cu13 for the CUDA solver)",
              "users": n_users, "items": n_items, "nnz": int(mat.nnz), "factors": 64, "iterations": 15, "seconds": round(dt, 2)}
print(f"ALS fit ({out['als']['solver']}): {n_users:,} x {n_items:,}, {mat.nnz:,} nnz, 64 factors, 15 iterations: {dt:.2f} s", flush=True)

# --- 3. scoring: all users x all items in blocks, top-100 -----------------------------------------
from recsys_assets.lib.topk import top_k_rows

k = 100
U = torch.from_numpy(uf).to(dev)
V = torch.from_numpy(itf).to(dev)
block = max(1, (1 << 26 if cuda else 1 << 24) // n_items)
sync()
t0 = time.perf_counter()
kept = 0
for s in range(0, n_users, block):
    with torch.no_grad():
        scores = U[s : s + block] @ V.T
    cols_, vals_ = top_k_rows(scores, k)
    kept += cols_.size
sync()
dt = time.perf_counter() - t0
out["scoring"] = {"users": n_users, "items": n_items, "k": k, "block_users": block, "seconds": round(dt, 3), "users_per_s": round(n_users / dt, 1), "device": dev}
print(f"scoring: {n_users:,} users x {n_items:,} items, top-{k} in blocks of {block:,} users on {dev}: {dt:.2f} s ({n_users / dt:,.0f} users/s)", flush=True)

# --- 4. LightGBM devices -----------------------------------------------------------------------
import lightgbm as lgb

X = rng.standard_normal((2_000, 10))
y = (X[:, 0] > 0).astype(int)
lgb_out = {}
for device in ("cuda", "gpu"):
    try:
        lgb.train({"objective": "binary", "device_type": device, "verbose": -1, "num_iterations": 5}, lgb.Dataset(X, y))
        lgb_out[device] = "trains"
    except Exception as exc:  # the PyPI wheel has no CUDA build; OpenCL needs a runtime
        lgb_out[device] = f"unavailable: {str(exc).splitlines()[0][:160]}"
    print(f"LightGBM device_type={device}: {lgb_out[device]}", flush=True)
out["lightgbm"] = {"version": lgb.__version__, **lgb_out}

out["total_seconds"] = round(time.perf_counter() - t_start, 1)
print(json.dumps(out, indent=1))
name = "gpu_check_dry_run.json" if dry else "gpu_check.json"
target = os.path.join(os.environ["OUT"], name) if os.environ.get("OUT") else os.path.join("benchmarks/results", name)
os.makedirs(os.path.dirname(target), exist_ok=True)
with open(target, "w") as fh:
    json.dump(out, fh, indent=1)
EOF
