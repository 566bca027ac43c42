"""Arms as typed specs: the one place an arm name is parsed (docs/protocol.md, "Arms").

- ``popularity``: recent popularity; ``als``: ALS top-K (ID only);
- ``content_<enc>``: kNN of the user's interest vector in ``<enc>``'s space;
- ``ranker_no_text`` / ``ranker_<enc>``: LightGBM without / with the text features of ``<enc>``;
- ``<arm>+slots{n}``: the arm with ``n`` of its top-K slots reserved for new items.

Names are what the lake and the warehouse store; everything that needs to know what an arm
*is* (its kind, encoder, whether that encoder is a language model, its slot policy) asks
:func:`parse_arm` instead of slicing the string. Whether an encoder is a language model is
the encoder registry's answer (``encoders.encoder_is_neural``), said nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Sequence

from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.features.encoders import encoder_is_neural

ArmKind = Literal["popularity", "als", "content", "ranker"]
_SLOTS_RE = re.compile(r"^(?P<base>[^+]+)(?:\+slots(?P<n>\d+))?$")
NO_TEXT = "ranker_no_text"


class ArmError(RecsysError):
    """An arm name is unknown or cannot be served with the given models."""


@dataclass(frozen=True)
class ArmSpec:
    """What an arm is, parsed once from its name."""

    name: str
    """Full arm name (with any ``+slots{n}`` suffix): the key in recs, eval and report tables."""
    base: str
    """Name without the suffix (the key of its ranker model)."""
    kind: ArmKind
    """popularity | als | content | ranker."""
    encoder: str | None
    """Encoder of content_/ranker_ arms (None for ranker_no_text and the ID arms)."""
    slots: int
    """New-item slots reserved in the top K (0: none)."""

    @property
    def is_ranker(self) -> bool:
        return self.kind == "ranker"

    @property
    def uses_text(self) -> bool:
        """Whether the arm sees item text (a content arm or a ranker with an encoder)."""
        return self.encoder is not None

    @property
    def is_lm(self) -> bool:
        """Whether its encoder is a pretrained language model (the registry says so; TF-IDF/metadata are not)."""
        return self.encoder is not None and encoder_is_neural(self.encoder)

    def with_slots(self, n: int) -> "ArmSpec":
        """The same arm with ``n`` new-item slots (``n == 0``: the plain arm)."""
        return parse_arm(self.base if n == 0 else f"{self.base}+slots{n}")


@lru_cache(maxsize=4096)
def parse_arm(name: str) -> ArmSpec:
    """The spec of an arm name; :class:`ArmError` naming the accepted forms when it is none."""
    m = _SLOTS_RE.match(name)
    if not m:
        raise ArmError(f"Bad arm name {name!r}: expected <arm> or <arm>+slots<n>.")
    base, slots = m.group("base"), int(m.group("n") or 0)
    if base in ("popularity", "als"):
        return ArmSpec(name, base, base, None, slots)
    if base.startswith("content_") and len(base) > 8:
        return ArmSpec(name, base, "content", base[8:], slots)
    if base == NO_TEXT:
        return ArmSpec(name, base, "ranker", None, slots)
    if base.startswith("ranker_") and len(base) > 7:
        return ArmSpec(name, base, "ranker", base[7:], slots)
    raise ArmError(f"Unknown arm {name!r}: choose popularity, als, content_<enc>, ranker_no_text, ranker_<enc> (+slots<n>).")


def encoder_of(arm: str) -> str | None:
    """``ranker_minilm-l6+slots2`` -> ``minilm-l6``; arms without an encoder -> None."""
    return parse_arm(arm).encoder


def arm_specs(encoders: Sequence[str], new_item_slots: int = 0) -> list[ArmSpec]:
    """Arms of one evaluation run; with ``new_item_slots`` the ranker arms also run as ``+slots{n}``."""
    names = ["popularity", "als", *[f"content_{e}" for e in encoders], NO_TEXT, *[f"ranker_{e}" for e in encoders]]
    specs = [parse_arm(n) for n in names]
    if new_item_slots:
        specs += [s.with_slots(new_item_slots) for s in specs if s.is_ranker]
    return specs


def ranker_specs(encoders: Sequence[str]) -> list[ArmSpec]:
    """The arms that need a trained model (one per base name)."""
    return [parse_arm(NO_TEXT), *[parse_arm(f"ranker_{e}") for e in encoders]]


def headline_lm(arms: Sequence[str]) -> str | None:
    """The first language-model encoder among ``arms`` (in their order): the headline's LM."""
    for arm in arms:
        spec = parse_arm(arm)
        if spec.is_lm:
            return spec.encoder
    return None
