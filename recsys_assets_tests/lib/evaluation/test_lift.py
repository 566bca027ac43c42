"""lift_rows / warmup_rows: pairing, Holm, flags, and schemas that hold for any row order."""

import numpy as np
import polars as pl

from recsys_assets.lib.evaluation.evaluate import PER_USER_SCHEMA
from recsys_assets.lib.evaluation.lift import LiftConfig, comparisons_for, lift_rows, warmup_rows, with_holm


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
    # user/new (full scope, recall@20) is a primary endpoint: Holm-adjusted; the rest is exploratory (p_adjusted NULL).
    roles = dict(zip(out["segment"], out["role"]))
    assert roles == {"all": "exploratory", "new": "primary"}
    primary = out.filter(pl.col("role") == "primary")
    assert (primary["p_adjusted"] >= primary["p_value"]).all() and primary["p_adjusted"].null_count() == 0
    assert out.filter(pl.col("role") == "exploratory")["p_adjusted"].null_count() == 1


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


def test_pair_contributions_add_up_to_every_per_user_metric():
    """Two-way input: each truth pair's share of recall/ndcg/hitrate/mrr sums to the per-user metric."""
    from recsys_assets.lib.evaluation.evaluate import pair_ranks
    from recsys_assets.lib.evaluation.lift import pair_contributions
    from recsys_assets.lib.evaluation.metrics import per_user_metrics

    rng = np.random.default_rng(4)
    users = [f"u{i}" for i in range(30)]
    items = [f"i{j}" for j in range(60)]
    recs = pl.DataFrame(
        [(u, it, r + 1) for u in users for r, it in enumerate(rng.permutation(items)[:25])], schema=["user_id", "item_id", "rank"], orient="row"
    )
    truth = pl.DataFrame([(u, it) for u in users for it in rng.choice(items, size=rng.integers(1, 8), replace=False)], schema=["user_id", "item_id"], orient="row")
    info = pl.DataFrame({"item_id": items, "item_segment": ["new"] * 60, "item_bucket": ["0"] * 60})
    pairs = pair_ranks(recs, truth, info, 20).with_columns(protocol=pl.lit("p"), scope=pl.lit("full"), segment_kind=pl.lit("all"), segment=pl.lit("all"))
    expected = per_user_metrics(recs, truth, users, (10, 20))
    contrib = pair_contributions(pairs, expected.select("metric", "k").unique())
    got = contrib.group_by("user_id", "metric", "k").agg(pl.col("c").sum())
    both = expected.join(got, on=["user_id", "metric", "k"])
    assert both.height == expected.height == 30 * 4 * 2
    assert np.allclose(both["value"].to_numpy(), both["c"].to_numpy())


def test_trivial_cell_is_flagged_without_p():
    """A scope that ranked no more than K items measures nothing: flag 'trivial', no p."""
    pu = _per_user([("all", "all", 40)]).with_columns(scope=pl.lit("cold_only"))
    ranked = pl.DataFrame({"protocol": ["temporal"], "scope": ["cold_only"], "n_ranked": [9.0]})
    out = lift_rows(pu, [("ranker_minilm-l6", "ranker_no_text")], LiftConfig(n_boot=100), ranked_items=ranked)
    assert out["flag"].to_list() == ["trivial"]
    assert out["p_value"].to_list() == [None] and out["p_adjusted"].to_list() == [None]
    ranked = ranked.with_columns(n_ranked=pl.lit(21.0))
    out = lift_rows(pu, [("ranker_minilm-l6", "ranker_no_text")], LiftConfig(n_boot=100), ranked_items=ranked)
    assert out["flag"].to_list() == [None] and out["p_value"][0] < 0.001


def test_parts_adjusted_together_equal_one_call():
    """Reports compute one (protocol, scope) part at a time (reporting.report_parts): Holm then runs over each
    protocol's primary rows of every part together (here the new-user cell of `full` and the cold-item cell of
    `cold_only`: a family of 2 per protocol), and the rows are the bits one call gives."""
    parts = []
    for i, (protocol, scope, cells) in enumerate(
        [("item_holdout", "cold_only", [("all", "all", 30)]), ("item_holdout", "full", [("user", "new", 25)]),
         ("temporal", "cold_only", [("all", "all", 40)]), ("temporal", "full", [("all", "all", 30), ("user", "new", 20)])]
    ):
        noisy = _per_user(cells, seed=i).with_columns(pl.col("value") + pl.Series(np.random.default_rng(i).normal(0, 0.3, 2 * sum(n for *_, n in cells))))
        parts.append(noisy.with_columns(protocol=pl.lit(protocol), scope=pl.lit(scope)))
    comps, cfg = [("ranker_minilm-l6", "ranker_no_text")], LiftConfig()
    whole = lift_rows(pl.concat(parts), comps, cfg)
    assert whole.filter(pl.col("role") == "primary").height == 4
    by_part = with_holm([lift_rows(p, comps, cfg, holm=False) for p in parts])
    assert by_part.equals(whole)
    # Each part alone would adjust over a family of 1: p unchanged, which is wrong for the report.
    alone = pl.concat([lift_rows(p, comps, cfg) for p in parts]).filter(pl.col("role") == "primary")
    assert (alone["p_adjusted"] == alone["p_value"]).all()
    primary = whole.filter(pl.col("role") == "primary")
    assert (primary["p_adjusted"] > primary["p_value"]).any() and (primary["p_adjusted"] >= primary["p_value"]).all()
