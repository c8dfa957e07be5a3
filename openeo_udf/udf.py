# geocodec openEO UDF: Sentinel-2 chunk -> integer codes of the learned model's latent grid.
#
# Use inside apply_neighborhood (128 x 128 px, overlap 0, whole time axis), see
# geocodec/openeo_graph.py and docs/producer.md. The logic lives in
# geocodec.producer.chunks; this file only finds it and adapts the signatures.
#
# Dependencies reach the workers through the job option
#   "udf-dependency-archives": ["<URL of geocodec-udf.zip>#geocodec-deps"]
# (built by `geocodec udf-archive`): the backend unpacks the zip into the
# working directory as ./geocodec-deps, which holds the geocodec package and
# the model folder. The PyPI packages the UDF imports besides those are
# declared in the PEP 723 block below (backends that read it, such as
# openeo-geopyspark-driver, install them; elsewhere put them in the archive
# with `geocodec udf-archive --with-packages`). numpy and xarray are not
# listed: every openEO Python UDF runtime has them, and installing a second
# copy beside the backend's own would shadow it. The floors are pyproject's.
#
# /// script
# requires-python = ">=3.10"
# dependencies = [
#     "onnxruntime>=1.17",
#     "constriction==0.5.0",
#     "shapely>=2.0",
# ]
# ///
#
# Context keys (all optional): model, quality (default 5), threads (default:
# GEOCODEC_THREADS or 1), scale (1e-4), offset (0), nodata (0),
# layout ("input" | "latent"), tile_px, check_inputs (true), quality_figure
# (true: a last band preview_mse, the preview decoder's squared error per
# latent cell, which packing turns into each row's preview_psnr), refine (0:
# encode-time refinement steps per tile; needs torch and the model's weights,
# which the dependency archive does not ship).
#
# No PEP 563 future import (postponed annotations) here: the backend finds
# apply_datacube by its annotations, which must stay real objects.
import os
import sys

import xarray

_DEPS = os.environ.get("GEOCODEC_DEPS", "geocodec-deps")
if os.path.isdir(_DEPS) and os.path.abspath(_DEPS) not in sys.path:
    sys.path.insert(0, os.path.abspath(_DEPS))

from geocodec import producer as _producer  # noqa: E402  (cached in sys.modules: loaded once per worker)

if os.path.isdir(os.path.join(_DEPS, "models")) and not os.environ.get("GEOCODEC_MODEL"):
    _names = sorted(os.listdir(os.path.join(_DEPS, "models")))
    if _names:
        os.environ["GEOCODEC_MODEL"] = os.path.abspath(os.path.join(_DEPS, "models", _names[0]))


def apply_metadata(metadata, context: dict):
    """Output band labels: code_000 .. code_{C-1}, valid_fraction[, preview_mse]."""
    return _producer.apply_metadata(metadata, context)


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    """(t, bands, y, x) Sentinel-2 DN (5 model bands, optional SCL) -> (t, codes + valid_fraction [+ preview_mse], y, x)."""
    return _producer.apply_datacube(cube, context)
