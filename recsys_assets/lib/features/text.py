"""Item texts fed to the encoders, and the key that caches their embeddings.

An item's text is rendered from a template over the normalized catalog fields
(``ITEM_SCHEMA``). A field that is null or empty vanishes together with the
template text that only exists to frame it, so no dangling punctuation is left:

* brackets around a missing field go:  ``"Heat ({year})"`` -> ``"Heat"``
* a ``Label:`` in front of a missing field goes:
  ``"Heat (1995). Genres: {categories}. {description}"`` -> ``"Heat (1995). <description>"``
* the separators on both sides of the missing field are merged, so ``". ."``
  becomes ``"."`` and no text starts or ends with a separator.

Only the template's own literal text is ever cleaned; field values are kept
byte for byte (apart from stripping surrounding whitespace).
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass
from typing import Any

import polars as pl

from recsys_assets.lib.confighash import config_hash

TEMPLATE_FIELDS = ("title", "description", "categories", "year", "attributes")
DEFAULT_TEMPLATE = "{title} ({year}). Genres: {categories}. {description}"


@dataclass(frozen=True)
class ItemTextConfig:
    """How an item's text is composed from its catalog fields."""

    template: str = DEFAULT_TEMPLATE
    """Python format string over {title} {description} {categories} {year} {attributes}."""
    category_separator: str = ", "
    """Joins the item's categories list into one string."""

    def __post_init__(self) -> None:
        _parse_template(self.template)  # fail early, with the field named

    def config_hash(self) -> str:
        return config_hash(self)


def text_key(text: str) -> str:
    """sha256 hex of a composed text: the key of its embedding in the cache."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- template rendering --------------------------------------------------------

_OPEN_TO_CLOSE = {"(": ")", "[": "]", "{": "}", "<": ">", '"': '"', "'": "'"}
# "Genres: " right before a field, after the start or a sentence separator.
_LABEL_RE = re.compile(r"(?:^|(?<=[.;!?|,]))(\s*)[^\s.;:!?|,()\[\]][^.;:!?|,()\[\]\n]{0,40}?:\s*$")
_SEP_RUN_RE = re.compile(r"[.;,:!?|](?:\s*[.;,:!?|])+")
_SPACES_RE = re.compile(r"[ \t]{2,}")
_EDGE_PUNCT = " \t\n.;,:|-"
_TRAIL_PUNCT = " \t\n;,:|-"


def _parse_template(template: str) -> list[tuple[str, str | None, str]]:
    """``[(literal, field or None, format_spec)]``; raises ValueError on unknown fields."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"ItemTextConfig.template {template!r} is not a valid format string: {exc}") from exc
    out = []
    for literal, field, spec, _conv in parts:
        if field is not None and field not in TEMPLATE_FIELDS:
            raise ValueError(
                f"ItemTextConfig.template {template!r} uses unknown field {{{field}}}; "
                f"allowed fields: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
            )
        out.append((literal, field, spec or ""))
    return out


def _keep_last_separator(m: re.Match) -> str:
    run = m.group(0).rstrip()
    last = run[-1]
    # "|" is written with a space on both sides; ".,;:" hug the word before them.
    return " " + last if last == "|" and run[-2:-1].isspace() else last


def _clean_literal(text: str) -> str:
    """Tidy template text glued together around a removed field: ``". ."`` -> ``"."``.

    Of a run of separators the last one is kept: it belongs to what follows
    (``"{title}, {year}. {description}"`` without a year gives ``"Heat. ..."``).
    """
    text = _SEP_RUN_RE.sub(_keep_last_separator, text)
    return _SPACES_RE.sub(" ", text)


def _render(tokens: list[tuple[str, str | None, str]], values: dict[str, str | None]) -> str:
    # lits[i] is the template text before field i; lits[-1] trails the last field.
    lits: list[str] = []
    vals: list[str | None] = []
    for literal, field, spec in tokens:
        lits.append(literal)
        if field is not None:
            value = values.get(field)
            vals.append(format(value, spec) if value is not None and spec else value)
    if len(lits) == len(vals):
        lits.append("")

    out_lits: list[str] = [lits[0]]
    out_vals: list[str] = []
    for i, value in enumerate(vals):
        nxt = lits[i + 1]
        if value:
            out_vals.append(value)
            out_lits.append(nxt)
            continue
        # A missing field takes its framing with it, then the two sides are merged.
        prev = out_lits[-1]
        stripped = prev.rstrip()
        if stripped and stripped[-1] in _OPEN_TO_CLOSE and nxt.lstrip().startswith(_OPEN_TO_CLOSE[stripped[-1]]):
            prev, nxt = stripped[:-1].rstrip(), nxt.lstrip()[1:]  # "Heat (" + ")." -> "Heat" + "."
        else:
            label = _LABEL_RE.search(prev)
            if label:
                prev = prev[: label.start()]  # ". Genres: " -> "."
        space = " " if prev[-1:].isspace() or nxt[:1].isspace() else ""
        out_lits[-1] = _clean_literal(prev.rstrip() + space + nxt.lstrip())
    if not out_vals:
        return ""

    pieces = [out_lits[0].lstrip(_EDGE_PUNCT)]
    for i, value in enumerate(out_vals):
        nxt = out_lits[i + 1]
        if value[-1] in ".!?" and nxt.startswith("."):
            nxt = nxt[1:]  # "Dr." + ". Genres" -> "Dr. Genres"
        if i == len(out_vals) - 1:
            nxt = nxt.rstrip(_TRAIL_PUNCT)
        pieces.append(value)
        pieces.append(nxt)
    return "".join(pieces).strip()


def _field_values(row: dict[str, Any], config: ItemTextConfig) -> dict[str, str | None]:
    def clean(v: Any) -> str | None:
        if v is None:
            return None
        s = str(v).strip()
        return s or None

    cats = row.get("categories")
    if cats is not None and not isinstance(cats, str):
        cats = config.category_separator.join(c.strip() for c in cats if c is not None and c.strip())
    return {
        "title": clean(row.get("title")),
        "description": clean(row.get("description")),
        "categories": clean(cats),
        "year": clean(row.get("year")),
        "attributes": clean(row.get("attributes")),
    }


def compose_item_text(row: dict[str, Any], config: ItemTextConfig | None = None) -> str:
    """The text of one item (a dict with ``ITEM_SCHEMA`` fields; missing keys count as null)."""
    config = config or ItemTextConfig()
    return _render(_parse_template(config.template), _field_values(row, config))


def compose_item_texts(items: pl.DataFrame, config: ItemTextConfig | None = None) -> list[str]:
    """One text per row of ``items``, in row order (columns absent from the frame count as null)."""
    config = config or ItemTextConfig()
    tokens = _parse_template(config.template)
    used = [f for _, f, _ in tokens if f is not None]
    cols = [c for c in dict.fromkeys(used) if c in items.columns]
    if not cols:
        return [""] * items.height
    return [_render(tokens, _field_values(row, config)) for row in items.select(cols).iter_rows(named=True)]
