"""lift_rows / warmup_rows: pairing, Holm, flags, and schemas that hold for any row order."""

import numpy as np
import polars as pl

from recsys_assets.lib.evaluation.evaluate import PER_USER_SCHEMA
from recsys_assets.lib.evaluation.lift import LiftConfig, comparisons_for, lift_rows, warmup_rows


def _per_user(cells: list[tuple[str, str, int]], arms=("ranker_minilm-l6", "ranker_no_text"), seed=0) -> pl.DataFrame:
    """cells: (segment_kind, segment, n_users); the LM arm is 0.2 better for every user."""
    rng = np.random.default_rng(seed)
    rows = []
    for kind, seg, n in cells:
        base = rng.uniform(0, 0.5, n)
        for arm in arms:
            vals = base + (0.2 if arm == "ranker_minilm-l6" else 0.0)
            for i, v in enumerate(vals):
                rows.append(("temporal", "full", arm, kind, seg, 0 if kind.endswith("bucket") else None, f"u{seg}{i}", "recall", 20, float(v)))
    return pl.DataFrame(rows, schema=list(PER_USER_SCHEMA), orient="row").cast(PER_USER_SCHEMA)


def test_flag_appearing_after_many_unflagged_cells_keeps_the_schema():
    # 120 big cells (no flag) and then one small cell (flagged): the flag is first seen after row 100.
    cells = [("user", f"s{i:03d}", 25) for i in range(120)] + [("user", "zz_small", 3)]
    out = lift_rows(_per_user(cells), [("ranker_minilm-l6", "ranker_no_text")], LiftConfig(n_boot=50))
    assert out.height == 121
    assert out.filter(pl.col("segment") == "zz_small")["flag"].to_list() == ["too_few_users"]
    assert out.filter(pl.col("segment") != "zz_small")["flag"].null_count() == 120


def test_lift_is_the_paired_difference_and_holm_never_lowers_p():
    out = lift_rows(_per_user([("all", "all", 40), ("user", "new", 30)]), [("ranker_minilm-l6", "ranker_no_text")], LiftConfig(n_boot=200))
    assert np.allclose(out["abs_lift"].to_numpy(), 0.2)
    assert (out["ci_low"] > 0).all()
    assert (out["p_adjusted"] >= out["p_value"]).all()


def test_warmup_rows_per_bucket():
    cells = [("user_bucket", "0", 30), ("user_bucket", "1-2", 30)]
    out = warmup_rows(_per_user(cells), [("ranker_minilm-l6", "ranker_no_text")], LiftConfig(n_boot=100))
    assert sorted(out["history_bucket"].to_list()) == ["0", "1-2"]
    assert out["segment_kind"].unique().to_list() == ["user"]


def test_comparisons_follow_the_protocol_and_skip_absent_arms():
    arms = ["popularity", "als", "content_minilm-l6", "content_tfidf", "ranker_no_text", "ranker_tfidf", "ranker_minilm-l6"]
    pairs = comparisons_for(arms, ["minilm-l6", "mpnet-base"])
    assert ("ranker_minilm-l6", "ranker_tfidf") in pairs
    assert ("ranker_minilm-l6", "ranker_no_text") in pairs
    assert ("content_minilm-l6", "content_tfidf") in pairs
    assert not any(a.startswith("ranker_mpnet") for a, _ in pairs)
