"""The study's answer lines say what the CIs allow, from the three tables' rows."""

from __future__ import annotations

from datetime import date

import polars as pl

from recsys_assets.cli_study import answer_text
from recsys_assets.lib.study.answer import COST, FUSION, NEW_USERS, SIZE, STUDENT, study_answer, verdict
from recsys_assets.lib.study.tables import ENCODER_STUDY_SCHEMA, FUSION_SCHEMA, NEW_USER_SCHEMA

D = date(1998, 4, 1)


def _es_row(encoder, params, lift, lo, hi, *, is_lm=True, teacher=None, tf=(None, None, None), seconds=1.0, share=None, speed=None, pareto=False):
    base = dict.fromkeys(ENCODER_STUDY_SCHEMA)
    base.update(
        window_start=D, window_end=D, days_pooled=3, protocol="item_holdout", cell="cold_items", encoder=encoder, is_lm=is_lm,
        teacher=teacher, params=params, dim=384, catalogue_seconds=seconds, metric="recall", k=20, value=0.1,
        lift_vs_no_text=lift, ci_low_vs_no_text=lo, ci_high_vs_no_text=hi, lift_vs_tfidf=tf[0], ci_low_vs_tfidf=tf[1], ci_high_vs_tfidf=tf[2],
        n_users=77, share_of_teacher_lift=share, speedup_vs_teacher=speed, pareto=pareto,
    )
    return base


def _frames(es_rows, fu_rows=(), nu_rows=()):
    return (
        pl.DataFrame(es_rows, schema=ENCODER_STUDY_SCHEMA),
        pl.DataFrame(list(fu_rows), schema=FUSION_SCHEMA),
        pl.DataFrame(list(nu_rows), schema=NEW_USER_SCHEMA),
    )


def _answer(frame: pl.DataFrame, question: str) -> list[str]:
    return frame.filter(pl.col("question") == question)["answer"].to_list()


def test_verdict_reads_the_ci():
    assert verdict(0.001, 0.1) == "clears 0" and verdict(-0.2, -0.01) == "below 0" and verdict(-0.1, 0.1) == "within noise"
    assert verdict(None, 0.1) == "no CI"


def test_only_the_largest_lifts_and_the_student_keeps_a_share():
    es = [
        _es_row("tfidf", 1_700_000, 0.013, -0.037, 0.062, is_lm=False, seconds=0.4, pareto=True),
        _es_row("minilm-l3", 17_200_000, 0.0096, -0.038, 0.057, tf=(-0.003, -0.03, 0.025), seconds=16.0),
        _es_row("mpnet-base", 109_500_000, 0.0646, 0.001, 0.128, tf=(0.05, -0.009, 0.112), seconds=670.0, pareto=True),
        _es_row("distill-mpnet", 17_700_000, 0.0408, -0.018, 0.099, teacher="mpnet-base", share=0.63, speed=30.0, pareto=True),
        _es_row("distill-als", 17_400_000, 0.0388, 0.001, 0.097),  # the collaborative student: no encoder teacher
    ]
    ans = study_answer(*_frames(es))
    size = _answer(ans, SIZE)
    assert len(size) == 1 and size[0].startswith("only the largest lifts: mpnet-base (109.5M) +0.0646 [+0.001, +0.128]")
    assert "smallest minilm-l3 (17.2M)" in size[0]
    assert "distill" not in size[0]  # students are not rungs of the size ladder
    cost = _answer(ans, COST)[0]
    assert cost.startswith("no LM beats TF-IDF (TF-IDF: 0.40 s") and cost.endswith("Pareto front (cheapest first): tfidf, distill-mpnet, mpnet-base")
    student = _answer(ans, STUDENT)
    assert student == [
        "its own ranker lift over no text clears 0 in item_holdout/cold_items +0.0388 [+0.001, +0.097]",
        "keeps item_holdout/cold_items: 0.63 (+0.0408 [-0.018, +0.099]) of mpnet-base's lift over no text, 30.0x its encode speed",
    ]
    assert "distill-als" not in size[0]


def test_null_answers_stay_null():
    es = [
        _es_row("tfidf", 1_700_000, 0.01, -0.03, 0.05, is_lm=False, seconds=0.4),
        _es_row("minilm-l6", 22_700_000, 0.02, -0.01, 0.05, tf=(0.01, -0.02, 0.04)),
        _es_row("mpnet-base", 109_500_000, -0.01, -0.05, 0.03, tf=(-0.01, -0.04, 0.02)),
        _es_row("distill-mpnet", 17_700_000, 0.03, 0.001, 0.06, teacher="mpnet-base", speed=6.2),
    ]
    ans = study_answer(*_frames(es))
    assert _answer(ans, SIZE)[0].startswith("no: no LM's ranker lift over no text clears 0")
    assert _answer(ans, STUDENT)[0] == (
        "not measurable: mpnet-base's lift over no text clears 0 in no cell; its own lift clears 0 in item_holdout/cold_items, 6.2x its encode speed"
    )


def test_smaller_lifting_model_is_not_read_as_size_paying_off():
    es = [
        _es_row("minilm-l6", 22_700_000, 0.233, 0.015, 0.451),
        _es_row("mpnet-base", 109_500_000, -0.023, -0.276, 0.230),
    ]
    assert _answer(study_answer(*_frames(es)), SIZE)[0].startswith("no: minilm-l6 (22.7M) +0.2330 [+0.015, +0.451] clear(s) 0, the largest does not")


def test_fusion_and_new_user_lines():
    fu = [
        {**dict.fromkeys(FUSION_SCHEMA), "protocol": "temporal", "cell": "cold_items", "step": 1, "variant": "desc", "encoder": "minilm-l6@desc", "n_users": 50},
        {**dict.fromkeys(FUSION_SCHEMA), "protocol": "temporal", "cell": "cold_items", "step": 2, "variant": "image", "encoder": "minilm-l6", "n_users": 50,
         "previous_variant": "desc", "lift_vs_previous": 0.08, "ci_low_vs_previous": 0.02, "ci_high_vs_previous": 0.14},
    ]
    nu_base = {**dict.fromkeys(NEW_USER_SCHEMA), "protocol": "temporal", "n_users": 807}
    nu = [
        {**nu_base, "arm": "content_minilm-l6", "baseline_arm": "popularity", "value": 0.0036, "baseline_value": 0.1277, "abs_lift": -0.1241, "ci_low": -0.182, "ci_high": -0.066},
        {**nu_base, "arm": "content_minilm-l6", "baseline_arm": "content_attributes", "value": 0.0036, "baseline_value": 0.1343, "abs_lift": -0.1307, "ci_low": -0.186, "ci_high": -0.076},
        {**nu_base, "arm": "content_attributes", "baseline_arm": "popularity", "value": 0.1343, "baseline_value": 0.1277, "abs_lift": 0.0066, "ci_low": -0.019, "ci_high": 0.032},
    ]
    ans = study_answer(*_frames([_es_row("minilm-l6", 22_700_000, 0.0, -0.1, 0.1)], fu, nu))
    assert _answer(ans, FUSION) == ["+image: +0.0800 [+0.020, +0.140] (clears 0)"]
    line = _answer(ans, NEW_USERS)[0]
    assert line.startswith("best profile-text kNN content_minilm-l6 0.0036 vs popularity 0.1277: -0.1241 [-0.182, -0.066] (below 0)")
    assert "vs plain attributes: -0.1307 [-0.186, -0.076] (below 0)" in line
    assert line.endswith("plain attributes vs popularity: +0.0066 [-0.019, +0.032] (within noise)")
    text = answer_text(ans)
    assert text.splitlines()[0].startswith("  " + SIZE)


def test_a_single_language_model_is_not_called_a_ladder():
    ans = study_answer(*_frames([_es_row("minilm-l6", 22_700_000, 0.02, -0.01, 0.05)]))
    assert _answer(ans, SIZE) == ["one language model only (no ladder): minilm-l6 (22.7M) +0.0200 [-0.010, +0.050] (within noise)"]
