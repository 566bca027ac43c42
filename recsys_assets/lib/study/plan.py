"""Which encoders one study run switches on, and which encoder serves each fusion variant.

The ladder (``encoders.LADDER``), any registered distilled students, and the fusion
variants (``encoders.TEXT_VARIANTS``) of the fusion base become encoders of one nightly
configuration, so every one of them gets its ``content_<enc>`` and ``ranker_<enc>`` arms on
the same users, truth and K. A fusion variant whose inputs are identical to the base
encoder's (or to an earlier variant's) on this catalogue is not run twice: it is served by
that encoder (MovieLens has no descriptions, so ``desc`` is ``meta`` there); the ``image``
variant needs items with an ``image_vector``.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field

import polars as pl

from recsys_assets.lib.confighash import config_hash
from recsys_assets.lib.errors import ModelUnavailableError, RecsysError
from recsys_assets.lib.features import encoders as enc
from recsys_assets.lib.features.text import ItemTextConfig, compose_item_texts

STUDENT_MODULES = ("recsys_assets.lib.features.distill",)
"""Modules that register distilled students (``encoders.register_encoder``) when imported."""


@dataclass(frozen=True)
class StudyCell:
    """One primary cell the study reports (the headline's cells, docs/statistics.md)."""

    name: str
    """``cold_items`` or ``new_users``."""
    scope: str
    """``cold_only`` or ``full``."""
    segment_kind: str
    """``all`` or ``user``."""
    segment: str
    """``all`` or ``new``."""


@dataclass(frozen=True)
class StudyConfig:
    """What the study measures."""

    ladder: tuple[str, ...] = enc.LADDER
    """Encoders of the model-size ladder (unavailable ones are skipped, saying why)."""
    headline_encoder: str = "minilm-l6"
    """Configured first, so the headline's LM (the first LM configured) stays the default one."""
    fusion_base: str = "minilm-l6"
    """The language model the fusion ablation varies the inputs of."""
    fusion_variants: tuple[str, ...] = ("title", "meta", "desc", "image")
    """Text variants of the fusion ablation, each adding inputs to the one before."""
    students: bool = True
    """Add the registered distilled students (encoder specs with a teacher)."""
    cells: tuple[StudyCell, ...] = (
        StudyCell("cold_items", "cold_only", "all", "all"),
        StudyCell("new_users", "full", "user", "new"),
    )
    """The primary cells every table reports."""
    metric: str = "recall"
    """Primary metric."""
    k: int = 20
    """Its cut-off."""

    def config_hash(self) -> str:
        return config_hash(self)


@dataclass(frozen=True)
class FusionVariant:
    """One row of the fusion ablation and the encoder that serves it."""

    variant: str
    """Text variant name (``title``...)."""
    inputs: str
    """What the variant's encoder sees."""
    encoder: str | None
    """Encoder whose arms serve the variant (None: not measurable here)."""
    note: str = ""
    """Why it is served by another encoder, or skipped."""


@dataclass(frozen=True)
class StudyPlan:
    """The encoders of one study run, in configured order, and the fusion rows."""

    encoders: tuple[str, ...]
    """Every encoder to switch on (headline LM first, then the ladder, students, variants, baselines)."""
    fusion: tuple[FusionVariant, ...]
    """The fusion ablation's variants."""
    skipped: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    """(encoder, why) of ladder encoders or students that cannot run here."""


def load_student_modules() -> list[str]:
    """Import the modules that register distilled students; returns the ones found."""
    found = []
    for name in STUDENT_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        found.append(name)
    return found


def student_names() -> list[str]:
    """Registered distilled students (encoder specs of family ``student``)."""
    return [n for n in enc.available_encoders() if enc.encoder_spec(n).family == "student"]


def _inputs_key(items: pl.DataFrame, template: str, image: bool, base_text: ItemTextConfig) -> str:
    texts = compose_item_texts(items, ItemTextConfig(template=template, category_separator=base_text.category_separator))
    h = hashlib.sha256("\x1e".join(texts).encode())
    has_images = "image_vector" in items.columns and items["image_vector"].drop_nulls().len() > 0
    h.update(b"image" if image and has_images else b"noimage")
    return h.hexdigest()


def fusion_variants(items: pl.DataFrame, base: str, variants: tuple[str, ...], text: ItemTextConfig) -> list[FusionVariant]:
    """The fusion rows on this catalogue: each variant's serving encoder (deduplicated by identical inputs)."""
    has_images = "image_vector" in items.columns and items["image_vector"].drop_nulls().len() > 0
    seen: dict[str, str] = {_inputs_key(items, text.template, True, text): base}
    out = []
    for name in variants:
        v = enc.TEXT_VARIANTS[name]
        if v.image and not has_images:
            out.append(FusionVariant(name, v.description, None, "no item has an image_vector"))
            continue
        key = _inputs_key(items, v.template, v.image, text)
        if key in seen:
            out.append(FusionVariant(name, v.description, seen[key], f"same inputs as {seen[key]} on this catalogue"))
            continue
        encoder = f"{base}{enc.VARIANT_SEP}{name}"
        seen[key] = encoder
        out.append(FusionVariant(name, v.description, encoder))
    return out


def plan_study(items: pl.DataFrame, cfg: StudyConfig, text: ItemTextConfig, encoder_config: enc.EncoderConfig, cache_dir=None) -> StudyPlan:
    """The encoders to switch on for the study of this catalogue (each is loaded once to check it runs here)."""
    if cfg.students:
        load_student_modules()
    wanted = list(dict.fromkeys([cfg.headline_encoder, *[e for e in cfg.ladder if enc.encoder_spec(e).is_lm]]))
    if cfg.students:
        wanted += [s for s in student_names() if s not in wanted]
    skipped: list[tuple[str, str]] = []
    ok: list[str] = []
    for name in wanted:
        if enc.is_per_snapshot(name):  # trained by its own asset before the embeddings of each day
            ok.append(name)
            continue
        try:
            enc.get_encoder(name, encoder_config, cache_dir=cache_dir)
        except ModelUnavailableError as exc:
            skipped.append((name, str(exc).splitlines()[0]))
            continue
        ok.append(name)
    fusion: list[FusionVariant] = []
    if cfg.fusion_variants:
        if cfg.fusion_base not in ok:
            raise RecsysError(f"the fusion ablation's base encoder {cfg.fusion_base!r} cannot run here: " + dict(skipped).get(cfg.fusion_base, "not in the ladder"))
        fusion = fusion_variants(items, cfg.fusion_base, cfg.fusion_variants, text)
        ok += [f.encoder for f in fusion if f.encoder and f.encoder not in ok]
    ok += [e for e in cfg.ladder if not enc.encoder_spec(e).is_lm and e not in ok]
    return StudyPlan(encoders=tuple(ok), fusion=tuple(fusion), skipped=tuple(skipped))
