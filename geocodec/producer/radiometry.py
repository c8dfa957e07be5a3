"""Digital numbers to reflectance, and the checks that catch inputs at the wrong scale.

Sentinel-2 L1C/L2A products store reflectance x 10000 in uint16; exports differ: Sentinel Hub's
16-bit exports are reflectance x 65535, and L2A products of processing baseline 04.00 and later
(from January 2022) add an offset of -1000 DN (``BOA_ADD_OFFSET``) that must be applied before
dividing. One convention for users: ``reflectance = (DN + offset) / scale`` (``--scale 10000
--offset 0`` by default); the UDF context carries it as ``DN * scale + offset``
(:func:`udf_context`).

The encoder was trained on reflectance; fed DN x 65535 read as x 10000 it still runs, and
returns codes of a scene that does not exist. :func:`check_reflectance` looks at each band of a
chunk and raises :class:`~geocodec.errors.InputError` naming the band when the values are not
plausible Sentinel-2 reflectance: many pixels above 1.5 (bright clouds and snow stay below),
many below 0 (a wrong offset), or a band that is constant (a missing band or a fill value).
Each chunk is judged alone (the UDF sees one chunk), so a chunk of open water, dark at any scale,
passes: a scene with land in it is caught at its first land chunk.
"""

from __future__ import annotations

import numpy as np

from geocodec.errors import InputError

__all__ = ["DEFAULT_SCALE", "DEFAULT_OFFSET", "HIGH", "LOW", "MAX_SHARE", "udf_context", "check_reflectance",
           "gdal_radiometry"]

DEFAULT_SCALE = 10000.0   # reflectance = (DN + offset) / scale
DEFAULT_OFFSET = 0.0
HIGH = 1.5                # reflectance above this is implausible for more than a few pixels
LOW = -0.05               # below this likewise (noise around 0 is normal in dark water)
MAX_SHARE = 0.05          # the share of a band's valid pixels allowed beyond HIGH or LOW
MIN_PIXELS = 256          # fewer valid pixels than this: too few to judge


def udf_context(scale: float | None = None, offset: float | None = None) -> dict:
    """The UDF context keys for ``reflectance = (DN + offset) / scale`` (``DN * scale' + offset'``)."""
    scale = DEFAULT_SCALE if scale is None else float(scale)
    offset = DEFAULT_OFFSET if offset is None else float(offset)
    if not np.isfinite(scale) or scale <= 0:
        raise InputError(f"the scale must be a positive number (reflectance = (DN + offset) / scale), got {scale}",
                         field="scale")
    if not np.isfinite(offset):
        raise InputError(f"the offset must be a finite number, got {offset}", field="offset")
    return {"scale": 1.0 / scale, "offset": offset / scale}


def _hint(context_scale: float, context_offset: float) -> str:
    scale = 1.0 / context_scale if context_scale else float("nan")
    return (f"reflectance was computed as (DN + {context_offset * scale:g}) / {scale:g}; "
            "is the scale 10000? Sentinel Hub 16-bit exports are reflectance x 65535 (--scale 65535), and L2A "
            "products of processing baseline 04.00 or later need --offset -1000 unless the offset was already "
            "applied; --no-input-check encodes anyway")


def check_reflectance(reflectance: np.ndarray, valid: np.ndarray, bands: list[str], *, scale: float = 1e-4,
                      offset: float = 0.0, where: str | None = None) -> None:
    """Raise :class:`InputError` naming the band(s) when ``reflectance`` (B, H, W) is implausible.

    ``valid`` (H, W) marks the pixels to judge; ``scale``/``offset`` are the UDF context's (for the
    message); ``where`` names the chunk or file (the error's source). Chunks with fewer than
    :data:`MIN_PIXELS` valid pixels are not judged.
    """
    x = np.asarray(reflectance)
    v = np.asarray(valid, bool) & np.isfinite(x).all(axis=0)
    n = int(v.sum())
    if n < MIN_PIXELS:
        return
    vals = x[:, v]                                    # (B, n)
    problems = []
    for name, b in zip(bands, vals):
        high, low = float((b > HIGH).mean()), float((b < LOW).mean())
        if high > MAX_SHARE:
            problems.append(f"band {name}: {high:.0%} of {n} valid pixels above reflectance {HIGH} "
                            f"(median {np.median(b):.3g})")
        elif low > MAX_SHARE:
            problems.append(f"band {name}: {low:.0%} of {n} valid pixels below reflectance {LOW} "
                            f"(median {np.median(b):.3g})")
        elif float(b.max()) == float(b.min()):
            problems.append(f"band {name} is constant ({float(b[0]):.6g} on all {n} valid pixels): a missing band "
                            "or a fill value?")
    if problems:
        field = "bands" if len(problems) > 1 else problems[0].split(":")[0].split()[1]
        hint = _hint(scale, offset) if any("reflectance" in p for p in problems) else \
            "check the band files; --no-input-check encodes anyway"
        raise InputError("implausible Sentinel-2 reflectance: " + "; ".join(problems) + ". " + hint,
                         source=where, field=field)


def gdal_radiometry(paths) -> tuple[float, float] | None:
    """``(scale, offset)`` in the ``(DN + offset) / scale`` form from the rasters' own GDAL band metadata.

    GDAL stores ``value = DN * s + o`` per band; files that all declare the same non-trivial ``s, o``
    (not 1 and 0) give ``(1 / s, o / s)``. None when no file declares one; an error when files disagree.
    """
    import rasterio

    found = set()
    for p in paths:
        with rasterio.open(p) as src:
            for s, o in zip(src.scales, src.offsets):
                if (s, o) not in ((1.0, 0.0), (None, None)) and s:
                    found.add((float(s), float(o or 0.0)))
    if not found:
        return None
    if len(found) > 1:
        raise InputError(f"the input rasters declare different scales/offsets {sorted(found)}; pass --scale and "
                         "--offset", field="scale")
    s, o = found.pop()
    return 1.0 / s, o / s
