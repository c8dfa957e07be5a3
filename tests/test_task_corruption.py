"""ships, monitor and train-head on corrupted files: exit 2 with the file, row and field, never a traceback."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

import fuzz
from helpers import rewrite, set_column_value
from geocodec.cli.main import main
from geocodec.tasks.heads import HEADS_DIR
from geocodec.training.datasets import data_root

pytestmark = pytest.mark.skipif(
    data_root() is None or not (data_root() / "rondonia/rondonia_s2l2a_monthly.npz").exists()
    or not (HEADS_DIR / "monitor.onnx").exists(), reason="real Rondonia data or shipped heads absent")


def ship_tiles_file(path):
    """Two 16 x 16-cell tiles (the ship head's size) over 2 dates, cells of real Rondonia codes."""
    from geocodec.codecs.learned import LearnedModel
    from geocodec.producer.pack import LatentGrid, pack_grid
    from geocodec.tasks.series import pick_bands, point_series_q
    from geocodec.training.datasets import load_rondonia

    d = load_rondonia()
    model = LearnedModel.load()
    q = point_series_q(model, pick_bands(d["X"][:4, :2]), 3)          # (4 points, 2 dates, C)
    cells = np.repeat(np.repeat(q.transpose(1, 2, 0).reshape(2, -1, 2, 2), 8, axis=2), 16, axis=3)
    lg = LatentGrid(q=cells.astype(np.int32), valid_fraction=np.ones((2, 16, 32), np.float32),
                    times=list(d["dates"][:2]), origin=(500000.0, 9000000.0), pixel_size=10.0, crs="EPSG:32720")
    pack_grid(lg, model, 3, path, tile_cells=16, block_rows=2, row_group_rows=2)


@pytest.fixture(scope="module", params=["series", "ships"])
def files(tmp_path_factory, request):
    d = tmp_path_factory.mktemp("corrupt")
    good = d / "good.parquet"
    (fuzz.learned_file if request.param == "series" else ship_tiles_file)(good)
    rows = pq.read_table(good, columns=["tile_id"]).num_rows
    row = rows - 3  # in the last row group, not the first
    code = bytearray(pq.read_table(good, columns=["code"]).column("code")[row].as_py() or b"")
    if not code:  # a row inside a block carries no bytes: corrupt its block head instead
        heads = [i for i, c in enumerate(pq.read_table(good, columns=["code"]).column("code").to_pylist()) if c]
        row = heads[-1]
        code = bytearray(pq.read_table(good, columns=["code"]).column("code")[row].as_py())
    code[len(code) // 2] ^= 0x20
    bad = rewrite(good, d / "bad.parquet", table=set_column_value("code", row, bytes(code)))
    data = good.read_bytes()
    short = d / "short.parquet"
    short.write_bytes(data[: len(data) * 2 // 3])
    return {"good": good, "bad": bad, "row": row, "short": str(short), "dir": d, "kind": request.param}


def _labels(folder):
    gpd = pytest.importorskip("geopandas")
    pytest.importorskip("pyogrio")
    import shapely

    xs = 500080.0 + 160.0 * np.arange(6)
    pts = shapely.points(xs, np.full(6, 8999920.0))
    path = folder / "labels.gpkg"
    gpd.GeoDataFrame({"cls": ["a", "b"] * 3}, geometry=pts, crs="EPSG:32720").to_file(path, driver="GPKG")
    return str(path)


def _skip_unless_fits(files, command):
    if (command == "ships") != (files["kind"] == "ships"):
        pytest.skip("ships runs on 16 x 16-cell tiles, monitor and train-head on the point series file")
    if command == "ships" and not (HEADS_DIR / "ships.onnx").exists():
        pytest.skip("ship head not built")


def _argv(command, path, folder):
    out = str(folder / f"{command}.out.parquet")
    return {"ships": ["ships", path, "-o", out, "-q"],
            "monitor": ["monitor", path, "--tile-id", "r00000c00005", "-o", out],
            "train-head": ["train-head", path, "--labels", _labels(folder), "--column", "cls",
                           "-o", str(folder / "head.onnx")]}[command]


@pytest.mark.parametrize("command", ["ships", "monitor", "train-head"])
def test_good_file_works(files, command):
    _skip_unless_fits(files, command)
    assert main(_argv(command, str(files["good"]), files["dir"])) == 0


def _expect_code_error(err: str) -> bool:
    return "row " in err and "field 'code" in err


def _expect_no_traceback(err: str) -> bool:
    return "Traceback" not in err


@pytest.mark.parametrize("which, expect", [("bad", _expect_code_error), ("short", _expect_no_traceback)],
                         ids=["corrupted_code_block", "truncated_file"])
@pytest.mark.parametrize("command", ["ships", "monitor", "train-head"])
def test_damaged_file_is_one_clear_line(files, command, which, expect, capsys):
    """A corrupted code block names its file, row and field; a truncated file is one line naming the file."""
    _skip_unless_fits(files, command)
    capsys.readouterr()
    assert main(_argv(command, files[which], files["dir"])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and files[which] in err[0] and expect(err[0]), err
