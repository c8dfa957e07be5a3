"""Sentinel-2 band names: their order, the bands a model takes, and the band a file's name carries.

A model says which bands it takes, in its input order, in its folder's ``model.json``
(``bands``); :func:`model_bands` reads it, and everything that needs "the model's bands"
(the openEO graph's ``load_collection``, the local runner, the band-file finder, the
heads' point series) asks it. The constants below are facts about Sentinel-2 and about
our training data, not about a particular model.
"""

from __future__ import annotations

import os
import re

#: every Sentinel-2 MSI band, in the order of the products (L1C)
SENTINEL2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
#: the bands of an L2A product (B10, cirrus, is dropped by the atmospheric correction), in product order
L2A_BANDS = tuple(b for b in SENTINEL2_BANDS if b != "B10")
#: the scene classification layer of L2A products (cloud and no-data masks)
SCL_BAND = "SCL"
#: the bands every source we train on has (B02, B03, B04, B08 at 10 m, B11 at 20 m): the shipped model's input
COMMON_BANDS = ("B02", "B03", "B04", "B08", "B11")
#: true colour, in display order (red, green, blue)
RGB_BANDS = ("B04", "B03", "B02")

_BAND_IN_NAME = re.compile(r"(?:^|[_.-])(B(?:0[1-9]|1[0-2]|8A)|SCL)(?:_\d+m)?$", re.IGNORECASE)


def model_bands(model: str | os.PathLike | None = None) -> tuple[str, ...]:
    """The bands ``model`` (a model folder or a shipped model's name; default the shipped model) takes,
    in its input order, as its ``model.json`` says."""
    from geocodec.codecs.learned import DEFAULT_MODEL, model_dir, read_card

    return tuple(read_card(model_dir(model or DEFAULT_MODEL))["bands"])


def band_in_name(path: str | os.PathLike) -> str | None:
    """The Sentinel-2 band (or ``SCL``) a file's name ends with, or None.

    The band is the last part of the name before the extension, after ``_``, ``.``
    or ``-`` (or the whole name), optionally followed by a resolution:
    ``genoa_2023-08-17_B02.tif``, ``B02.jp2``, ``T32TLR_20230101T103421_B8A_20m.jp2``,
    ``scene.b11.tif``, ``..._SCL_20m.jp2``. ``xB02.tif`` and ``band0.tif`` carry none.
    """
    m = _BAND_IN_NAME.search(os.path.splitext(os.path.basename(os.fspath(path)))[0])
    return m.group(1).upper() if m else None
