"""Distilled students of snapshot D (knowledge distillation), trained before item_embeddings encodes with them.

Each asset trains (or reuses, when its inputs are those of an earlier night) one student only when
that student is among the configured encoders; otherwise it records that it had nothing to do.
"""

import dagster as dg

from recsys_assets.defs.features.common import day_snapshot, events_before_day_dep, partition_day
from recsys_assets.defs.partitions import daily_partitions
from recsys_assets.defs.resources import LakeResource, ModelsResource
from recsys_assets.lib.errors import ModelUnavailableError
from recsys_assets.lib.features.distill import CF_STUDENT, EMBED_STUDENT, DistillConfig, ensure_student


def _materialize(context: dg.AssetExecutionContext, lake: LakeResource, models: ModelsResource, name: str) -> dg.MaterializeResult:
    the_lake, cfg, day = lake.lake(), models.feature_config(), partition_day(context)
    distill_cfg = DistillConfig()
    if name not in cfg.encoders:
        return dg.MaterializeResult(metadata={"student": name, "trained": False, "skipped": f"{name} is not among the configured encoders"})
    snap = day_snapshot(the_lake, day, cfg)
    try:
        record = ensure_student(
            name,
            the_lake,
            day,
            snap.items,
            snap.events_before if name == CF_STUDENT else None,
            text_cfg=cfg.text,
            encoder_cfg=cfg.encoder,
            protocol=cfg.protocol,
            als_cfg=cfg.als,
            inter_cfg=cfg.interactions,
            cfg=distill_cfg,
        )
    except ModelUnavailableError as exc:
        # A missing teacher degrades this student's arms only (item_embeddings skips the encoder).
        context.log.warning(f"{name}: no student for {day}: {exc}")
        return dg.MaterializeResult(metadata={"student": name, "trained": False, "skipped": str(exc)})
    report = record["report"]
    context.log.info(
        f"{name}: {'trained' if record['trained'] else 'reused'} on {record['n_items']} items before {record['cutoff']} "
        f"(validation cosine {report['before']['cosine']:.3f} -> {report['after']['cosine']:.3f})"
    )
    metadata = {
        "student": name,
        "trained": bool(record["trained"]),
        "cutoff": record["cutoff"],
        "input_fingerprint": record["input_fingerprint"],
        "files_hash": record["files_hash"],
        "n_items": int(record["n_items"]),
        "train_seconds": float(report["seconds"]),
        "seconds": float(record["seconds"]),
        "params": int(report["params"]),
        "config_hash": distill_cfg.config_hash(),
    }
    for when in ("before", "after"):
        for key, value in report[when].items():
            metadata[f"validation_{when}/{key}"] = float(value)
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(group_name="features", kinds={"pytorch"}, partitions_def=daily_partitions, deps=["items"])
def embedding_student(context: dg.AssetExecutionContext, lake: LakeResource, models: ModelsResource) -> dg.MaterializeResult:
    """distill-mpnet: MiniLM-L6 cut to 3 layers, MSE-distilled from mpnet-base's embeddings of the catalogue texts before C <= D - w."""
    return _materialize(context, lake, models, EMBED_STUDENT)


@dg.asset(group_name="features", kinds={"pytorch", "implicit"}, partitions_def=daily_partitions, deps=[events_before_day_dep(), "items"])
def collaborative_student(context: dg.AssetExecutionContext, lake: LakeResource, models: ModelsResource) -> dg.MaterializeResult:
    """distill-als: MiniLM-L6 cut to 3 layers + linear head, fine-tuned to predict the ALS factors of warm items before C <= D - w."""
    return _materialize(context, lake, models, CF_STUDENT)
