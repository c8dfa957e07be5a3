"""Learned Sentinel-2 codecs shipped as ONNX: load a model folder, encode tiles, describe the file.

Consumer-safe (onnxruntime only, no torch). A model folder holds:

``model.json``
    identity and contract: ``name``, ``version``, ``bands`` (input order),
    ``resolution_m``, ``normalisation`` (text), ``tile_px`` (training tile size),
    ``stride`` (pixels per latent cell), ``channels``, ``embedding_dimension``,
    ``qualities``: ``{"1": {"step": s, "tables": [{"min", "freq"}...], "context": {...}}, ...}``
    (integer tables fitted on the training latents at that step: one per latent
    channel, or, with a ``context`` rule (:mod:`geocodec.format.context`), shared
    tables the rule picks from), ``files``: ``{role: {"path", "sha256"}}`` for the ONNX files
    below, plus ``training`` and ``scores`` for the model card.
``encoder.onnx``
    ``bands`` float32 [N, B, H, W] reflectance (DN / 10000), H and W multiples
    of ``stride`` -> ``latent`` float32 [N, C, H/stride, W/stride], before
    quantization (q = round(latent / step)).
``embedding_decoder.onnx``
    ``latent`` float32 [N, C, h, w] (dequantized, q * step) -> ``embedding``
    float32 [N, D]: the per-tile vector the file's decoder field names.
``preview_decoder.onnx``
    ``latent`` -> ``preview`` float32 [N, B, H, W] reflectance, so a person can
    see what was encoded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from geocodec.format.entropy import IntegerTable
from geocodec.format.entropy_model import EntropyModel
from geocodec.errors import InputError, MetadataError
from geocodec.format.metadata import build_extension
from geocodec.format.onnx_model import OnnxDecoder, sha256_hex
from geocodec.format.published import reference_form
from geocodec.resources import DEFAULT_MODEL, MODELS_DIR

CODEC_NAME = "geocodec-s2-learned"
#: where a published model's files are downloadable (the release assets of the project); a card's
#: ``published.base_url`` overrides it. Files name their decoder and tables by these URLs.
RELEASE_URL = "https://github.com/geocodec/geocodec/releases/download/{name}-{version}/"


def model_dir(name_or_path: str | os.PathLike = DEFAULT_MODEL) -> Path:
    """The folder of a model: ``name_or_path`` itself if it is a directory, else the shipped model of that name.

    Raises :class:`~geocodec.errors.InputError` listing the shipped models when neither exists.
    """
    p = Path(name_or_path)
    if p.is_dir():
        return p
    q = MODELS_DIR / str(name_or_path)
    if q.is_dir():
        return q
    known = sorted(d.name for d in MODELS_DIR.iterdir() if d.is_dir()) if MODELS_DIR.is_dir() else []
    raise InputError(f"no model folder '{name_or_path}'; shipped models: {known or 'none'}", field="model")


def read_card(path: Path) -> dict:
    """The ``model.json`` of a model folder, checked for the keys every model has."""
    card_path = Path(path) / "model.json"
    try:
        card = json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MetadataError(f"unreadable model card: {exc}", source=str(card_path)) from exc
    for key in ("name", "version", "bands", "stride", "channels", "qualities", "files"):
        if key not in card:
            raise MetadataError("missing key", source=str(card_path), field=key)
    return card


@dataclass
class LearnedModel:
    """A model folder: its card (``model.json``) and its ONNX sessions, built on first use.

    ``threads``: intra-op threads of the sessions (None: :func:`geocodec.threads.onnx_threads`).
    """

    path: Path
    card: dict
    threads: int | None = None

    @classmethod
    def load(cls, name_or_path: str | os.PathLike = DEFAULT_MODEL, *, threads: int | None = None) -> "LearnedModel":
        """Open the model folder ``name_or_path`` (a path or a shipped model's name) and read its card."""
        path = model_dir(name_or_path)
        return cls(path, read_card(path), threads)

    # -- files ---------------------------------------------------------------------------------
    def file_bytes(self, role: str) -> bytes:
        """The bytes of the model file of ``role`` (``encoder``, ``embedding_decoder``, ``preview_decoder``).

        Raises :class:`~geocodec.errors.MetadataError` when the card names no such file or its sha256 differs.
        """
        entry = self.card["files"].get(role)
        if entry is None:
            raise MetadataError(f"model has no '{role}' file", source=str(self.path / "model.json"),
                                field=f"files.{role}")
        fp = self.path / entry["path"]
        data = fp.read_bytes()
        if sha256_hex(data) != entry["sha256"]:
            raise MetadataError(f"sha256 mismatch: model.json says {entry['sha256']}, the file hashes to "
                                f"{sha256_hex(data)}", source=str(fp), field=f"files.{role}.sha256")
        return data

    @cached_property
    def encoder(self) -> OnnxDecoder:  # an ONNX session; the class runs any single-input model
        """The encoder session: reflectance (N, B, H, W) -> latents (N, C, H/stride, W/stride)."""
        return OnnxDecoder(self.file_bytes("encoder"), source=str(self.path / "encoder.onnx"), threads=self.threads)

    @cached_property
    def preview_decoder(self) -> OnnxDecoder:
        """The preview decoder session: dequantized latents (N, C, h, w) -> reflectance (N, B, H, W)."""
        return OnnxDecoder(self.file_bytes("preview_decoder"), source=str(self.path / "preview_decoder.onnx"),
                           threads=self.threads)

    @property
    def bands(self) -> list[str]:
        """The input band names, in the order the encoder expects them."""
        return list(self.card["bands"])

    @property
    def stride(self) -> int:
        """Pixels per latent cell along each axis."""
        return int(self.card["stride"])

    @property
    def qualities(self) -> list[int]:
        """The quality levels the card has step sizes and tables for, ascending."""
        return sorted(int(k) for k in self.card["qualities"])

    def _quality(self, quality: int) -> dict:
        q = self.card["qualities"].get(str(int(quality)))
        if q is None:
            raise InputError(f"quality {quality} not available; this model has {self.qualities}", field="quality")
        return q

    def step(self, quality: int) -> float:
        """The quantization step at ``quality``; :class:`~geocodec.errors.InputError` if the model lacks it."""
        return float(self._quality(quality)["step"])

    def tables(self, quality: int) -> list[IntegerTable]:
        """The :class:`~geocodec.format.entropy.IntegerTable` list at ``quality``: one per latent channel,
        or the shared tables of a context model (:meth:`entropy_model`)."""
        return [IntegerTable.from_json(t) for t in self._quality(quality)["tables"]]

    def _published_tables(self, quality: int):
        """What a ``tables_ref`` to this model at ``quality`` stands for: its tables (and context)."""
        qd = self._quality(quality)
        return {"tables": qd["tables"], "context": qd["context"]} if "context" in qd else qd["tables"]

    def entropy_model(self, quality: int, latent_hw: tuple[int, int] = (16, 16)) -> EntropyModel:
        """The :class:`~geocodec.format.entropy_model.EntropyModel` of ``quality`` on a latent grid of
        ``latent_hw`` cells: the card's tables and, where it has one, its checkerboard ``context``
        (the context rule does not depend on the grid size)."""
        qd = self._quality(quality)
        c = int(self.card["channels"])
        return EntropyModel.from_json(qd["tables"], qd.get("context"), (c, *latent_hw))

    # -- encoding --------------------------------------------------------------------------------
    def latents(self, tiles: np.ndarray) -> np.ndarray:
        """Reflectance tiles (N, B, H, W) -> unquantized latents (N, C, H/stride, W/stride)."""
        tiles = np.asarray(tiles, dtype=np.float32)
        if tiles.ndim != 4 or tiles.shape[1] != len(self.bands):
            raise InputError(f"tiles must be (N, {len(self.bands)} bands {self.bands}, H, W), got {tiles.shape}",
                             field="bands")
        if tiles.shape[2] % self.stride or tiles.shape[3] % self.stride:
            raise InputError(f"tile size {tiles.shape[2:]} is not a multiple of the stride {self.stride}")
        if not np.isfinite(tiles).all():
            raise InputError("tiles contain NaN/inf: fill or mask nodata and clouds before encoding")
        return self.encoder(tiles)

    def encode(self, tiles: np.ndarray, quality: int) -> np.ndarray:
        """Reflectance tiles -> integer codes (N, C, S) at ``quality``."""
        return self.quantize(self.latents(tiles), quality)

    def quantize(self, y: np.ndarray, quality: int) -> np.ndarray:
        """Latents (N, C, h, w) -> integer codes (N, C, h*w) at ``quality``: round(y / step)."""
        q = np.round(np.asarray(y, dtype=np.float32) / self.step(quality)).astype(np.int32)
        return q.reshape(q.shape[0], q.shape[1], -1)

    def preview(self, q: np.ndarray, quality: int, latent_hw: tuple[int, int]) -> np.ndarray:
        """Codes ``q`` (N, C, S) at ``quality`` -> preview reflectance (N, B, H, W); ``latent_hw``: (h, w), h*w = S."""
        y = (q.astype(np.float32) * self.step(quality)).reshape(q.shape[0], q.shape[1], *latent_hw)
        return self.preview_decoder(y)

    def identity(self) -> dict:
        """The ``model`` field of a file's extension metadata."""
        enc = self.file_bytes("encoder")
        return {"name": self.card["name"], "version": str(self.card["version"]), "sha256": sha256_hex(enc),
                "bands": self.bands, "resolution_m": self.card.get("resolution_m", 10.0),
                "normalisation": self.card.get("normalisation"), "href": None}

    @property
    def published(self) -> bool:
        """True for a model shipped in the installed package (``geocodec/models/<name>``, the folder named
        as the card): readers find its decoder and tables there, so files may name them by reference."""
        try:
            return self.path.resolve().parent == MODELS_DIR.resolve() and self.path.name == self.card["name"]
        except OSError:
            return False

    def release_url(self, filename: str) -> str:
        """The download URL of one of the model's files (:data:`RELEASE_URL`, or the card's ``published.base_url``)."""
        base = (self.card.get("published") or {}).get("base_url") or RELEASE_URL
        return base.format(name=self.card["name"], version=self.card["version"]) + filename

    def extension(self, *, quality: int, latent_hw: tuple[int, int], grid: dict, block_rows: int = 16,
                  embed: bool = True) -> tuple[dict, bytes]:
        """(``geocodec`` metadata dict, decoder bytes) for files made with this model.

        ``embed`` False, for a :attr:`published` model, names the decoder and the quality's
        tables by reference (model name, version, sha256, release URL) instead of carrying them
        (about 290 KB less per file); an unpublished model's are always embedded.
        """
        dec = self.file_bytes("embedding_decoder")
        c = int(self.card["channels"])
        ext = build_extension(
            codec_name=CODEC_NAME, codec_version=str(self.card["version"]), quality=quality,
            latent_shape=(c, *latent_hw), step=np.full(c, self.step(quality), np.float32),
            tables=self.entropy_model(quality, latent_hw), block_rows=block_rows, decoder_sha256=sha256_hex(dec),
            decoder_size=len(dec), decoder_input="latent", decoder_output="embedding",
            dimension=int(self.card["embedding_dimension"]), embedding_type="chip",
            semantics=f"per-tile vector from a {c} x {latent_hw[0]} x {latent_hw[1]} latent grid "
                      f"({self.stride * float(self.card.get('resolution_m', 10.0)):.0f} m cells)",
            model=self.identity(), grid=grid)
        if not embed and self.published:
            efile = self.card["files"]["embedding_decoder"]["path"]
            ext = reference_form(ext, name=self.card["name"], version=str(self.card["version"]), quality=quality,
                                 decoder_href=self.release_url(efile),
                                 model_tables=self._published_tables(quality), tables_href=self.release_url("model.json"))
        return ext, dec
