"""The study's answer first: one short line per question and cell, read off the three tables.

The questions of docs/study.md, answered only from the rows of ``reports.encoder_study``,
``reports.fusion_ablation`` and ``reports.new_user_text`` (no new statistic): a lift "clears
0" when its 95% CI lies above 0, is "below 0" when the CI lies below, and is "within noise"
otherwise. The lines say what the CIs allow and quote the figures, so a null answer reads as
a null answer, not as "smaller is better".
"""

from __future__ import annotations

import polars as pl

from recsys_assets.lib.errors import RecsysError

ANSWER_COLUMNS = ("question", "where", "answer")

SIZE, COST, STUDENT, FUSION, NEW_USERS = (
    "bigger model lifts more?",
    "worth its cost?",
    "student keeps the lift?",
    "which inputs carry it?",
    "new users' profile text?",
)


def fmt_ci(lift, lo, hi) -> str:
    """``+0.0646 [+0.001, +0.128]`` (``-`` without a lift; the lift alone without a CI)."""
    if lift is None:
        return "-"
    if lo is None or hi is None:
        return f"{lift:+.4f}"
    return f"{lift:+.4f} [{lo:+.3f}, {hi:+.3f}]"


def verdict(lo, hi) -> str:
    """``clears 0`` / ``below 0`` / ``within noise`` of a 95% CI (``no CI`` when missing)."""
    if lo is None or hi is None:
        return "no CI"
    if lo > 0:
        return "clears 0"
    if hi < 0:
        return "below 0"
    return "within noise"


def _params(p) -> str:
    return f"{p / 1e6:.1f}M" if p and p >= 1e5 else (f"{p:,}" if p else "?")


def _where(protocol: str, cell: str, n) -> str:
    return f"{protocol}/{cell} (n={n})" if n is not None else f"{protocol}/{cell}"


def student_names(es: pl.DataFrame) -> set[str]:
    """Encoders of the table that are distilled students: a teacher, or the registry's family ``student``
    (the collaborative student's teacher is ALS, not an encoder)."""
    from recsys_assets.lib.features.encoders import encoder_spec
    from recsys_assets.lib.study.plan import load_student_modules

    load_student_modules()
    out = set(es.filter(pl.col("teacher").is_not_null())["encoder"].to_list())
    for name in es["encoder"].unique().to_list():
        try:
            if encoder_spec(name).family == "student":
                out.add(name)
        except RecsysError:  # an encoder this install does not know: not a student it can name
            continue
    return out


def size_answer(block: list[dict], students: set[str] = frozenset()) -> str:
    """Bigger model? over the ladder's language models (students excluded) of one cell, by parameters."""
    lms = sorted((r for r in block if r["is_lm"] and not r["teacher"] and r["encoder"] not in students), key=lambda r: (r["params"] or 0, r["encoder"]))
    if not lms:
        return "no language model in this cell"
    lifting = [r for r in lms if verdict(r["ci_low_vs_no_text"], r["ci_high_vs_no_text"]) == "clears 0"]
    small, large = lms[0], lms[-1]

    def one(r):
        return f"{r['encoder']} ({_params(r['params'])}) {fmt_ci(r['lift_vs_no_text'], r['ci_low_vs_no_text'], r['ci_high_vs_no_text'])}"

    if len(lms) == 1:
        return f"one language model only (no ladder): {one(large)} ({verdict(large['ci_low_vs_no_text'], large['ci_high_vs_no_text'])})"
    if not lifting:
        return f"no: no LM's ranker lift over no text clears 0; smallest {one(small)}, largest {one(large)}"
    names = ", ".join(one(r) for r in lifting)
    if lifting == [large] and len(lms) > 1:
        return f"only the largest lifts: {names}; smallest {one(small)}"
    if large not in lifting:
        return f"no: {names} clear(s) 0, the largest does not: {one(large)}"
    return f"several sizes lift: {names}"


def cost_answer(block: list[dict]) -> str:
    """Worth its cost? Does any LM beat TF-IDF in this cell, and at what encode time."""
    tfidf = next((r for r in block if r["encoder"] == "tfidf"), None)
    lms = [r for r in block if r["is_lm"]]
    beats = [r for r in lms if verdict(r["ci_low_vs_tfidf"], r["ci_high_vs_tfidf"]) == "clears 0"]
    front = ", ".join(r["encoder"] for r in sorted(block, key=lambda r: r["catalogue_seconds"] or 0.0) if r["pareto"]) or "-"
    t_sec = tfidf["catalogue_seconds"] if tfidf else None
    if not beats:
        where = f" (TF-IDF: {t_sec:.2f} s for the catalogue)" if t_sec is not None else ""
        return f"no LM beats TF-IDF{where}; Pareto front (cheapest first): {front}"
    parts = []
    for r in beats:
        ratio = f", {r['catalogue_seconds'] / t_sec:.0f}x TF-IDF's encode time" if t_sec and r["catalogue_seconds"] else ""
        parts.append(f"{r['encoder']} {fmt_ci(r['lift_vs_tfidf'], r['ci_low_vs_tfidf'], r['ci_high_vs_tfidf'])} over TF-IDF{ratio}")
    return "; ".join(parts) + f"; Pareto front: {front}"


def student_answers(es: pl.DataFrame, names: set[str]) -> list[dict]:
    """One line per student: the share of its teacher's lift kept where the teacher's lift clears 0, and its speed-up;
    a student without an encoder teacher (ALS factors) gets its own lift."""
    out = []
    for name in sorted(names):
        rows = es.filter(pl.col("encoder") == name).sort("protocol", "cell").to_dicts()
        if not rows:
            continue
        teacher = rows[0]["teacher"]
        if not teacher:
            own = [f"{r['protocol']}/{r['cell']} {fmt_ci(r['lift_vs_no_text'], r['ci_low_vs_no_text'], r['ci_high_vs_no_text'])}" for r in rows
                   if verdict(r["ci_low_vs_no_text"], r["ci_high_vs_no_text"]) == "clears 0"]
            answer = ("its own ranker lift over no text clears 0 in " + "; ".join(own)) if own else "its own ranker lift over no text clears 0 in no cell"
            out.append({"question": STUDENT, "where": f"{name} (teacher: ALS factors)", "answer": answer})
            continue
        speed = next((r["speedup_vs_teacher"] for r in rows if r["speedup_vs_teacher"]), None)
        speed_txt = f", {speed:.1f}x its encode speed" if speed else ""
        kept = [r for r in rows if r["share_of_teacher_lift"] is not None]
        if kept:
            cells = "; ".join(
                f"{r['protocol']}/{r['cell']}: {r['share_of_teacher_lift']:.2f} ({fmt_ci(r['lift_vs_no_text'], r['ci_low_vs_no_text'], r['ci_high_vs_no_text'])})"
                for r in kept
            )
            answer = f"keeps {cells} of {teacher}'s lift over no text{speed_txt}"
        else:
            own = [r for r in rows if verdict(r["ci_low_vs_no_text"], r["ci_high_vs_no_text"]) == "clears 0"]
            own_txt = "; its own lift clears 0 in " + ", ".join(f"{r['protocol']}/{r['cell']}" for r in own) if own else ""
            answer = f"not measurable: {teacher}'s lift over no text clears 0 in no cell{own_txt}{speed_txt}"
        out.append({"question": STUDENT, "where": f"{name} (teacher {teacher})", "answer": answer})
    return out


def fusion_answer(rows: list[dict]) -> str:
    """Which inputs? Each added input's increment over the previous variant, and the image row."""
    steps = []
    for r in rows:
        if r["lift_vs_previous"] is not None:
            v = verdict(r["ci_low_vs_previous"], r["ci_high_vs_previous"])
            steps.append(f"+{r['variant']}: {fmt_ci(r['lift_vs_previous'], r['ci_low_vs_previous'], r['ci_high_vs_previous'])} ({v})")
    skipped = [r["variant"] for r in rows if r["encoder"] is None and r["variant"] != "no language model"]
    tail = f"; not measured: {', '.join(skipped)}" if skipped else ""
    if not steps:
        return "no increment measurable (each variant is served by the same inputs or not switched on)" + tail
    return "; ".join(steps) + tail


def new_user_answer(rows: list[dict]) -> str:
    """Profile text vs popularity vs the same attributes as plain categories, in the new-user cell."""
    by = {(r["arm"], r["baseline_arm"]): r for r in rows}
    text = [r for (a, b), r in by.items() if b == "popularity" and a.startswith("content_") and a not in ("content_attributes", "content_metadata", "content_tfidf")]
    parts = []
    if text:
        best = max(text, key=lambda r: r["value"] if r["value"] is not None else -1.0)
        parts.append(
            f"best profile-text kNN {best['arm']} {best['value']:.4f} vs popularity {best['baseline_value']:.4f}: "
            f"{fmt_ci(best['abs_lift'], best['ci_low'], best['ci_high'])} ({verdict(best['ci_low'], best['ci_high'])})"
        )
        vs_attr = by.get((best["arm"], "content_attributes"))
        if vs_attr:
            parts.append(f"vs plain attributes: {fmt_ci(vs_attr['abs_lift'], vs_attr['ci_low'], vs_attr['ci_high'])} ({verdict(vs_attr['ci_low'], vs_attr['ci_high'])})")
    attr = by.get(("content_attributes", "popularity"))
    if attr:
        parts.append(f"plain attributes vs popularity: {fmt_ci(attr['abs_lift'], attr['ci_low'], attr['ci_high'])} ({verdict(attr['ci_low'], attr['ci_high'])})")
    return "; ".join(parts) or "no new-user rows"


def _by_cell(frame: pl.DataFrame, order: str) -> list[tuple[str, list[dict]]]:
    """(``protocol/cell (n=..)``, rows) per cell of a table, in protocol, cell, ``order`` order."""
    blocks: dict[tuple, list[dict]] = {}
    for r in frame.sort("protocol", "cell", order).iter_rows(named=True):
        blocks.setdefault((r["protocol"], r["cell"]), []).append(r)
    out = []
    for (protocol, cell), block in blocks.items():
        n = next((r["n_users"] for r in block if r["n_users"] is not None), None)
        out.append((_where(protocol, cell, n), block))
    return out


def study_answer(es: pl.DataFrame, fu: pl.DataFrame, nu: pl.DataFrame) -> pl.DataFrame:
    """The answer table (question, where, answer) of one window's three study tables."""
    rows: list[dict] = []
    blocks = _by_cell(es, "encoder")
    students = student_names(es)
    rows += [{"question": SIZE, "where": where, "answer": size_answer(block, students)} for where, block in blocks]
    rows += [{"question": COST, "where": where, "answer": cost_answer(block)} for where, block in blocks]
    rows += student_answers(es, students)
    rows += [{"question": FUSION, "where": where, "answer": fusion_answer(block)} for where, block in _by_cell(fu, "step")]
    for protocol in sorted(nu["protocol"].unique().to_list()) if nu.height else []:
        block = nu.filter(pl.col("protocol") == protocol).to_dicts()
        rows.append({"question": NEW_USERS, "where": _where(protocol, "new_users", block[0]["n_users"]), "answer": new_user_answer(block)})
    return pl.DataFrame(rows, schema={c: pl.String for c in ANSWER_COLUMNS})
