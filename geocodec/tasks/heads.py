"""Task heads: small ONNX models that carry their own metadata (as Deepness does).

Every head is one ONNX file whose ``metadata_props`` hold, as JSON strings:

``geocodec:task``        ``"landcover"``, ``"ships"``, ``"monitor"``, ``"custom"`` (few-shot) ...
``geocodec:input``       what the head eats: ``{"kind": "embedding" | "latent_grid" | "latent_cell_series",
                         "shape": [...]}`` (without the batch axis)
``geocodec:output``      ``{"kind": "class_probabilities" | "heatmap" | "count" ..., "names": [...]}``
``geocodec:classes``     ``[{"name": ..., "color": "#rrggbb"}, ...]`` (classification heads)
``geocodec:codec``       ``{"name": codec name, "qualities": [..], "model_sha256": encoder sha256,
                         "decoder_sha256": sha256 of the file's embedding decoder}``
``geocodec:training``    ``{"data": ..., "split": ..., "command": ...}``
``geocodec:scores``      ``{...}`` measured scores, by quality

The CLI and the QGIS plugin read the same keys through :class:`Head`. A head from a file is checked
before it runs, as a decoder is (:func:`geocodec.format.onnx_checks.check_model`: no external data or
other file access, allowed operators only, one float32 input shaped as ``geocodec:input`` says,
bounded allocation). Consumer-safe: onnxruntime only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geocodec.errors import MetadataError
from geocodec.format.onnx_checks import check_model, parse_model
from geocodec.format.onnx_model import OnnxDecoder, sha256_hex
from geocodec.resources import HEADS_DIR

KEYS = ("task", "input", "output", "classes", "codec", "training", "scores")


def add_head_metadata(onnx_bytes: bytes, meta: dict) -> bytes:
    """Write ``meta`` (keys of KEYS, JSON-able values) into an ONNX model's metadata_props."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    existing = {p.key: p for p in model.metadata_props}
    for key, value in meta.items():
        if key not in KEYS:
            raise ValueError(f"unknown head metadata key {key!r}; known: {KEYS}")
        text = json.dumps(value)
        full = f"geocodec:{key}"
        if full in existing:
            existing[full].value = text
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = full, text
    return model.SerializeToString()


def _declared_shape(spec, source: str) -> list | None:
    """The dims after the batch axis that ``geocodec:input`` declares (None entries: dynamic); None if it gives none."""
    shape = spec.get("shape") if isinstance(spec, dict) else None
    if shape is None:
        return None
    if not isinstance(shape, list) or not all(d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0)
                                              for d in shape):
        raise MetadataError(f"'geocodec:input' shape {shape!r} is not a list of positive integers or nulls",
                            source=source, field="geocodec:input")
    return shape


def _read_meta(data: bytes, source: str) -> dict:
    """The parsed ``geocodec:*`` metadata of a head's ONNX bytes (keys of KEYS that are present)."""
    raw = {e.key: e.value for e in parse_model(data, source=source, field="head").metadata_props}
    meta = {}
    for key in KEYS:
        text = raw.get(f"geocodec:{key}")
        if text is None:
            continue
        try:
            meta[key] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MetadataError(f"metadata 'geocodec:{key}' is not JSON: {exc}", source=source,
                                field=f"geocodec:{key}") from exc
    return meta


def shipped_head_path(name: str, for_file: dict | None = None) -> Path:
    """The shipped head ``name``: ``heads/NAME.onnx`` (trained on the default model's codes), or, when ``for_file``
    (a file's ``geocodec`` metadata) names another encoder, ``heads/<codec>/NAME.onnx`` trained on that encoder's
    codes if one is shipped. Raises :class:`~geocodec.errors.MetadataError` when no shipped head has that name."""
    default = HEADS_DIR / f"{name}.onnx"
    if not default.is_file():
        known = sorted(f.stem for f in HEADS_DIR.glob("*.onnx")) if HEADS_DIR.is_dir() else []
        raise MetadataError(f"no head file '{name}'; shipped heads: {known or 'none'}", field="head")
    model = (for_file or {}).get("model")
    want = model.get("sha256") if isinstance(model, dict) else None
    if want:
        for path in [default, *sorted(HEADS_DIR.glob(f"*/{name}.onnx"))]:
            codec = _read_meta(path.read_bytes(), str(path)).get("codec") or {}
            if codec.get("model_sha256") == want:
                return path
    return default


def head_label(path: str | os.PathLike) -> str:
    """How to name a head to a user: its path under the shipped heads (``ships.onnx``, ``s2-5band-v2/ships.onnx``),
    else its file name."""
    p = Path(path).resolve()
    try:
        return p.relative_to(HEADS_DIR.resolve()).as_posix()
    except ValueError:
        return p.name


@dataclass
class Head:
    """A task head: its ONNX file's ``path`` and bytes (``data``) and the parsed ``geocodec:*`` metadata ``meta``.

    Build it with :meth:`load`, which also opens the onnxruntime session :meth:`run` uses.
    """

    path: str
    data: bytes
    meta: dict

    @classmethod
    def load(cls, name_or_path: str | os.PathLike, *, for_file: dict | None = None) -> "Head":
        """Open a head: an ONNX path, or the name of a shipped head (``geocodec/models/heads/NAME.onnx``).

        ``for_file``: the ``geocodec`` metadata of the file the head will run on. A shipped name then picks the shipped
        head trained on that file's codes: the default model's (``heads/NAME.onnx``) or an earlier shipped codec's
        (``heads/<codec>/NAME.onnx``), so files made with an earlier default keep working; the default one when none
        matches (:meth:`check_file` then says why it refuses the file).

        Raises :class:`~geocodec.errors.MetadataError` when there is no such file, a metadata value is not JSON, or the
        model has no ``geocodec:task``/``geocodec:input`` (not a geocodec head).
        """
        p = Path(name_or_path)
        if not p.is_file():
            p = shipped_head_path(str(name_or_path), for_file)
        data = p.read_bytes()
        meta = _read_meta(data, str(p))
        if "task" not in meta or "input" not in meta:
            raise MetadataError("not a geocodec head: no 'geocodec:task'/'geocodec:input' metadata", source=str(p))
        check = check_model(data, source=str(p), field="head", input_shape=_declared_shape(meta["input"], str(p)))
        session = OnnxDecoder(data, source=str(p), check=check)
        head = cls(str(p), data, meta)
        head._session = session
        return head

    @property
    def task(self) -> str:
        """The head's task, e.g. ``landcover``, ``ships``, ``monitor`` or ``custom``."""
        return self.meta["task"]

    @property
    def class_names(self) -> list[str]:
        """The class names in output order (empty for a head without ``geocodec:classes``)."""
        return [c["name"] for c in self.meta.get("classes", [])]

    @property
    def class_colors(self) -> list[str]:
        """The ``#rrggbb`` colour per class, ``#888888`` where none is given."""
        return [c.get("color", "#888888") for c in self.meta.get("classes", [])]

    @property
    def sha256(self) -> str:
        """The sha256 of the head's ONNX bytes (hex)."""
        return sha256_hex(self.data)

    def run(self, x: np.ndarray) -> np.ndarray:
        """The head's output for a batch ``x`` (float32, batch axis first, shaped as ``geocodec:input`` says)."""
        return self._session(np.asarray(x, dtype=np.float32))

    def check_file(self, ext: dict, source: str) -> None:
        """Refuse a file made by another model or decoder than the head was trained for."""
        codec = self.meta.get("codec") or {}
        want = codec.get("model_sha256")
        have = (ext.get("model") or {}).get("sha256")
        if want and have and want != have:
            raise MetadataError(f"head {os.path.basename(self.path)} was trained on codes of encoder sha256 "
                                f"{want}, the file's model is {have}", source=source, field="model.sha256")
        want = codec.get("decoder_sha256")
        if want and self.meta["input"].get("kind") == "embedding" and want != ext["decoder"]["sha256"]:
            raise MetadataError(f"head {os.path.basename(self.path)} expects embeddings of decoder sha256 {want}, "
                                f"the file's decoder is {ext['decoder']['sha256']}", source=source,
                                field="decoder.sha256")
