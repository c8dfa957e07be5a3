"""Loaders for the real Sentinel-2 data the project trains, tests and benchmarks on.

The data is never copied into the repository: it is read from ``../shared/data``
beside the checkout, from ``$GEOCODEC_DATA``, or from a path the user gives.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from geocodec.errors import InputError

RONDONIA_FILE = "rondonia/rondonia_s2l2a_monthly.npz"


def data_root() -> Path | None:
    """``$GEOCODEC_DATA``, else ``../shared/data`` beside the repository, else None."""
    from geocodec.resources import data_dir

    root = data_dir()
    return root if root.is_dir() else None


def require(relative: str) -> Path:
    """The path of ``relative`` under :func:`data_root`.

    Raises :class:`~geocodec.errors.InputError` if there is no data root or no such file.
    """
    root = data_root()
    path = None if root is None else root / relative
    if path is None or not path.exists():
        raise InputError(f"real data file {relative} not found; set GEOCODEC_DATA to the folder holding it",
                         source=str(path) if path else relative)
    return path


def load_rondonia(path: str | os.PathLike | None = None) -> dict:
    """Rondonia point time series: X (n, 11 dates, 10 bands) float32 reflectance, labels, lon/lat, dates."""
    path = Path(path) if path else require(RONDONIA_FILE)
    with np.load(path, allow_pickle=False) as d:
        out = {k: d[k] for k in d.files}
    out["dates"] = (out["days_since_1970"].astype("datetime64[D]")).astype("datetime64[ms]")
    return out


def rondonia_embedding_table(path: str | os.PathLike | None = None):
    """The Rondonia series as a GeoParquet table: one 110-value vector (11 dates x 10 bands) per point."""
    import shapely
    from pyproj import CRS

    from geocodec.format.embeddings_io import embeddings_table

    d = load_rondonia(path)
    n = len(d["X"])
    vectors = d["X"].reshape(n, -1)
    geoms = shapely.points(d["lon"], d["lat"])
    columns = {
        "tile_id": np.array([f"rondonia-{i:05d}" for i in range(n)]),
        "label": d["y"].astype(str),
        "datetime": np.full(n, d["dates"][0]),
        "end_datetime": np.full(n, d["dates"][-1]),
    }
    import pyarrow as pa

    cols = {k: pa.array(v) if k not in ("datetime", "end_datetime") else
            pa.array(v, pa.timestamp("ms")).cast(pa.timestamp("ms", tz="UTC")) for k, v in columns.items()}
    return embeddings_table(vectors, geoms, CRS.from_user_input("OGC:CRS84").to_json_dict(), cols)
