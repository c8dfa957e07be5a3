"""A hive-style partitioned dataset (``date=YYYY-MM-DD/part-0.parquet``) reads like the flat list of its
files: monitor and the latent-series heads see every file (one rule, ``geocodec.format.sources``)."""

from __future__ import annotations

import numpy as np
import pytest

from geocodec.tasks.heads import HEADS_DIR
from geocodec.training.datasets import data_root

HAVE_DATA = data_root() is not None and (data_root() / "rondonia/rondonia_s2l2a_monthly.npz").exists()
pytestmark = [pytest.mark.skipif(not HAVE_DATA, reason="real Rondonia data (../shared/data) not present"),
              pytest.mark.skipif(not (HEADS_DIR / "monitor.onnx").exists(), reason="shipped heads not built")]

QUALITY = 3


@pytest.fixture(scope="module")
def partitioned(tmp_path_factory):
    """Rondonia points of four classes as tiles (2 x 2 uniform latent cells), one file per date under
    ``root/date=.../part-0.parquet``; also the same dates in one file. Returns (root, paths, single, q)."""
    from geocodec.codecs.learned import LearnedModel
    from geocodec.producer.pack import LatentGrid, pack_grid
    from geocodec.tasks.series import pick_bands, point_series_q
    from geocodec.training.datasets import load_rondonia

    model = LearnedModel.load()
    d = load_rondonia()
    y = d["y"]
    idx = np.array([np.flatnonzero(y == c)[0] for c in ("Forest", "Clear_Cut_Bare_Soil", "Water", "Wetland")])
    q = point_series_q(model, pick_bands(d["X"])[idx], QUALITY)            # (n, T, C)
    n, t, _ = q.shape
    grid = np.repeat(np.repeat(q.transpose(1, 2, 0)[:, :, None, :], 2, axis=2), 2, axis=3)  # (T, C, 2, 2n)
    dates = list(d["dates"])

    def write(path, sl):
        lg = LatentGrid(q=grid[sl].astype(np.int32), valid_fraction=np.ones((len(dates[sl]), 2, 2 * n), np.float32),
                        times=dates[sl], origin=(500000.0, 9000000.0), pixel_size=10.0, crs="EPSG:32720")
        pack_grid(lg, model, QUALITY, path, tile_cells=2)
        return str(path)

    base = tmp_path_factory.mktemp("partitioned")
    root = base / "dataset"
    paths = []
    for i in range(t):
        part = root / f"date={str(dates[i])[:10]}"
        part.mkdir(parents=True)
        paths.append(write(part / "part-0.parquet", slice(i, i + 1)))
    (root / ".hidden.parquet").write_bytes(b"not parquet")          # hidden files are skipped
    single = write(base / "all-dates.parquet", slice(None))
    return str(root), sorted(paths), single, q


def test_one_rule_finds_every_partition(partitioned):
    from geocodec.format.sources import expand_sources

    root, paths, _, _ = partitioned
    assert expand_sources(root) == paths
    assert expand_sources([root]) == expand_sources(paths) == paths


def test_cell_series_of_partitions_equals_flat_list_and_single_file(partitioned):
    from geocodec.tasks.series import cell_series

    root, paths, single, q = partitioned
    point = (500450.0, 8999950.0)               # tile 2, its right cell
    a, b, c = (cell_series(src, point=point) for src in (root, paths, single))
    assert len(a.dates) == q.shape[1] and a.cell == (0, 1)
    for other in (b, c):
        assert other.tile_id == a.tile_id and other.cell == a.cell
        np.testing.assert_array_equal(other.dates, a.dates)
        np.testing.assert_array_equal(other.q, a.q)
    np.testing.assert_array_equal(a.q, q[2])
    assert a.sources == paths


def test_monitor_on_partitions_equals_flat_list(partitioned):
    from geocodec.tasks.monitor import monitor_place

    root, paths, single, _ = partitioned
    results = [monitor_place(src, "monitor", tile_id="r00000c00001") for src in (root, paths, single)]
    first = results[0]
    assert first.layer.table.num_rows == len(paths)
    for r in results[1:]:
        assert r.layer.table.column("date").equals(first.layer.table.column("date"))
        assert r.layer.table.column("class").equals(first.layer.table.column("class"))
        np.testing.assert_array_equal(r.result.probabilities, first.result.probabilities)
        assert r.result.events == first.result.events


def test_monitor_cli_on_partitions(partitioned, tmp_path, capsys):
    import pyarrow.parquet as pq

    from geocodec.cli.main import main

    root, paths, _, _ = partitioned
    tables = []
    for i, src in enumerate(([root], paths)):
        out = tmp_path / f"mon{i}.parquet"
        assert main(["monitor", *src, "--tile-id", "r00000c00000", "-o", str(out)]) == 0
        tables.append(pq.read_table(out))
    assert tables[0].num_rows == len(paths)
    assert tables[0].drop_columns(["geometry"]).equals(tables[1].drop_columns(["geometry"]))


def test_classify_series_head_on_partitions_equals_flat_list(partitioned):
    from geocodec.tasks.classify import classify_file

    root, paths, single, _ = partitioned
    results = [classify_file(src, "landcover", progress=False) for src in (root, paths, single)]
    first = results[0].layer.table
    assert first.num_rows == 4 and first.column("n_dates").to_pylist() == [len(paths)] * 4
    for r in results[1:]:
        assert r.layer.table.equals(first)
