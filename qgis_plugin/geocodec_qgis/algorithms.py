"""Processing algorithms: each one calls the geocodec library and turns its Arrow output into a layer.

No decoding, head, label or search logic lives here: GeocodecFile/GeocodecDataset read and decode,
geocodec.tasks.classify / heads / ships / monitor / labels / fewshot / search / preview do the work,
the same functions the CLI calls. Their results (geocodec.tasks.results.Result) become the output
layers, styled with the result's own QGIS style.
"""

from __future__ import annotations

import os

from qgis.core import (QgsProcessingAlgorithm, QgsProcessingException, QgsProcessingParameterExtent,
                       QgsProcessingParameterFeatureSink, QgsProcessingParameterFeatureSource,
                       QgsProcessingParameterField, QgsProcessingParameterFile,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterNumber,
                       QgsProcessingParameterPoint, QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterString, QgsProcessingUtils)

from .compat import (BYTE, FAST_INSERT, FILE_BEHAVIOR, FLAG_ADVANCED, NUMBER_DOUBLE, SOURCE_ANY_GEOMETRY, SOURCE_POINT,
                     SOURCE_POLYGON)
from .layers import SOURCE_PROPERTY, apply_style, features_from_table, fields_for, geometry_type, qgis_crs


def _geocodec_error():
    from geocodec.errors import GeocodecError

    return GeocodecError


class GeocodecAlgorithm(QgsProcessingAlgorithm):
    NAME = ""
    LABEL = ""
    HELP = ""

    def __init__(self):
        super().__init__()
        self._style = None      # QML text of the result's style, applied to the output layer in postProcessAlgorithm
        self._dest = None
        self._meta = None

    def createInstance(self):  # noqa: N802
        return type(self)()

    def name(self):
        return self.NAME

    def displayName(self):  # noqa: N802
        return self.LABEL

    def group(self):
        return "geocodec"

    def groupId(self):  # noqa: N802
        return "geocodec"

    def shortHelpString(self):  # noqa: N802
        return self.HELP

    # -- shared parameters -------------------------------------------------------------------
    def add_input(self, desc="geocodec file (.parquet)"):
        self.addParameter(QgsProcessingParameterFile("INPUT", desc, behavior=FILE_BEHAVIOR,
                                                     fileFilter="GeoParquet (*.parquet *.geoparquet)"))

    def add_query(self):
        self.addParameter(QgsProcessingParameterExtent("EXTENT", "Only tiles in this extent", optional=True))
        self.addParameter(QgsProcessingParameterString("START", "From date (ISO, e.g. 2020-01-01)", optional=True))
        self.addParameter(QgsProcessingParameterString("END", "To date (ISO)", optional=True))

    def query(self, parameters, context, file_crs):
        """(bbox in the file's CRS or None, (start, end) or None)."""
        bbox = None
        if parameters.get("EXTENT"):
            r = self.parameterAsExtent(parameters, "EXTENT", context, qgis_crs(file_crs))
            if not r.isNull() and not r.isEmpty():
                bbox = (r.xMinimum(), r.yMinimum(), r.xMaximum(), r.yMaximum())
        start = self.parameterAsString(parameters, "START", context) or None
        end = self.parameterAsString(parameters, "END", context) or None
        return bbox, (start, end) if (start or end) else None

    # -- output --------------------------------------------------------------------------------
    def write_sink(self, parameters, context, feedback, table, crs, name="OUTPUT"):
        """Write an Arrow table with a WKB ``geometry`` column, in ``crs``, to the sink ``name``."""
        fields = fields_for(table)
        sink, dest = self.parameterAsSink(parameters, name, context, fields, geometry_type(table), qgis_crs(crs))
        if sink is None:
            raise QgsProcessingException(f"could not create the output {name}")
        feats = features_from_table(table, fields)
        n = max(len(feats), 1)
        for i, feat in enumerate(feats):
            if feedback.isCanceled():
                break
            sink.addFeature(feat, FAST_INSERT)
            if i % 1000 == 0:
                feedback.setProgress(90 + 10 * i / n)
        self._dest = dest
        return dest

    def write_result(self, parameters, context, feedback, result, name="OUTPUT"):
        """Write a geocodec task result to the sink ``name``; its style goes on the layer afterwards."""
        dest = self.write_sink(parameters, context, feedback, result.table, result.crs, name)
        self._style = result.qml()
        return dest

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        try:
            return self.process(parameters, context, feedback)
        except QgsProcessingException:
            raise
        except _geocodec_error() as exc:
            raise QgsProcessingException(str(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - a message in the Processing log, not a bare traceback
            raise QgsProcessingException(f"{type(exc).__name__}: {exc}") from exc

    def postProcessAlgorithm(self, context, feedback):  # noqa: N802
        if self._dest:
            layer = QgsProcessingUtils.mapLayerFromString(self._dest, context)
            if layer is not None:
                self.style(layer)
        return {}

    def style(self, layer):
        apply_style(layer, self._style)
        if self._meta:
            md = layer.metadata()
            md.setTitle(self._meta.get("title", ""))
            md.setAbstract(self._meta.get("abstract", ""))
            layer.setMetadata(md)
            layer.setCustomProperty(SOURCE_PROPERTY, self._meta.get("source", ""))


class LoadFile(GeocodecAlgorithm):
    NAME, LABEL = "load", "Load geocodec file as tile layer"
    HELP = ("Tiles of a geocodec file as polygons in the file's CRS, with tile_id, datetime, end_datetime, "
            "valid_fraction and, where the file has them, the quality figures preview_psnr (dB of the preview "
            "against the input; low: the codec was out of its depth) and rate_ratio (bits against the model's "
            "typical rate); NULL where a tile has no value. With an extent or dates only the row groups that can match are read (no decoding). "
            "The layer's metadata (abstract) holds the model, quality, dates and bytes on disk vs raw float32.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_input()
        self.add_query()
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", "Tiles", SOURCE_POLYGON))

    def process(self, parameters, context, feedback):
        import pyarrow as pa

        from geocodec.format.info import format_summary, summarize
        from geocodec.format.query import Query
        from geocodec.format.reader import GeocodecFile

        source = self.parameterAsFile(parameters, "INPUT", context)
        with GeocodecFile(source) as f:
            bbox, time = self.query(parameters, context, f.crs)
            q = Query.make(bbox, time)
            summary = summarize(f)
            want = [c for c in ("tile_id", "datetime", "end_datetime", "valid_fraction", "preview_psnr",
                                "rate_ratio", "geometry") if c in f.column_names]
            groups = f.row_groups(q)
            parts = []
            for i, part in enumerate(f.iter_rows(q, want)):
                if feedback.isCanceled():
                    return {}
                parts.append(part.table)
                feedback.setProgress(90 * (i + 1) / max(len(groups), 1))
            # no tile matches: the same columns, empty (take of no rows)
            table = _nan_as_null(pa.concat_tables(parts) if parts else f.take([], want)[0])
            crs = f.crs
        feedback.pushInfo(f"{table.num_rows} tiles from {len(groups)} of {summary['row_groups']} row group(s)")
        dest = self.write_sink(parameters, context, feedback, table, crs)
        text = format_summary(summary)
        self._meta = {"title": os.path.basename(source), "abstract": text, "source": source}
        return {"OUTPUT": dest, "TILES": table.num_rows, "SUMMARY": text}


def _nan_as_null(table):
    """The quality figures' NaN (no value for the tile) as nulls, which QGIS shows as NULL and filters as such."""
    import pyarrow.compute as pc

    for name in ("preview_psnr", "rate_ratio"):
        if name in table.column_names:
            col = table.column(name)
            i = table.column_names.index(name)
            table = table.set_column(i, name, pc.if_else(pc.is_nan(col), None, col))
    return table


class Classify(GeocodecAlgorithm):
    NAME, LABEL = "classify", "Classify tiles with a head"
    HELP = ("Decodes every tile and runs a classification head (shipped: landcover; or a few-shot head .onnx). "
            "The layer is styled by class with the head's class names and colours (the legend).")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_input()
        self.addParameter(QgsProcessingParameterString("HEAD", "Head (shipped name or .onnx path)",
                                                       defaultValue="landcover"))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", "Classes", SOURCE_POLYGON))

    def process(self, parameters, context, feedback):
        from geocodec.tasks.classify import classify_file

        source = self.parameterAsFile(parameters, "INPUT", context)
        feedback.setProgress(5)
        r = classify_file(source, self.parameterAsString(parameters, "HEAD", context), progress=False)
        if feedback.isCanceled():
            return {}
        feedback.setProgress(85)
        dest = self.write_result(parameters, context, feedback, r.layer)
        return {"OUTPUT": dest, "CLASSES": r.names, "COUNTS": {n: int(c) for n, c in zip(r.names, r.counts) if c}}


def _file_crs(source):
    from geocodec.format.dataset import GeocodecDataset

    with GeocodecDataset(source) as ds:
        return ds.crs


class Ships(GeocodecAlgorithm):
    NAME, LABEL = "ships", "Detect ships"
    HELP = "Ship points (latent cells over the head's threshold) from the ship head on the codes of a learned-codec file."

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_input()
        self.add_query()
        self.addParameter(QgsProcessingParameterString("HEAD", "Head", defaultValue="ships"))
        self.addParameter(QgsProcessingParameterNumber("THRESHOLD", "Threshold (empty: the head's)", optional=True,
                                                       type=NUMBER_DOUBLE,
                                                       minValue=0.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", "Ships", SOURCE_POINT))

    def process(self, parameters, context, feedback):
        from geocodec.tasks.ships import detect_ships

        source = self.parameterAsFile(parameters, "INPUT", context)
        crs = _file_crs(source)
        bbox, time = self.query(parameters, context, crs)
        thr = parameters.get("THRESHOLD")
        thr = None if thr in (None, "") else self.parameterAsDouble(parameters, "THRESHOLD", context)
        feedback.setProgress(5)
        r = detect_ships(source, self.parameterAsString(parameters, "HEAD", context), threshold=thr, bbox=bbox,
                         time=time)
        if feedback.isCanceled():
            return {}
        feedback.pushInfo(f"{r.points.num_rows} ship points, threshold {r.threshold:.2f}")
        dest = self.write_result(parameters, context, feedback, r.points)
        return {"OUTPUT": dest, "COUNT": r.points.num_rows, "THRESHOLD": r.threshold}


class Monitor(GeocodecAlgorithm):
    NAME, LABEL = "monitor", "Monitor a place (class per date, change events)"
    HELP = ("Class per date and change events (e.g. forest -> cleared) for the latent cell under a point, over a "
            "file or a folder of files of one tiling; optionally a PNG chart of codes and class probabilities.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFile("INPUT", "geocodec file or folder of files",
                                                     behavior=FILE_BEHAVIOR))
        self.addParameter(QgsProcessingParameterPoint("POINT", "Place", optional=True))
        self.addParameter(QgsProcessingParameterString("TILE_ID", "…or tile id", optional=True))
        self.addParameter(QgsProcessingParameterString("HEAD", "Head", defaultValue="monitor"))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", "Dates", SOURCE_POLYGON))
        self.addParameter(QgsProcessingParameterFileDestination("PLOT", "Time-series chart", "PNG (*.png)",
                                                                optional=True))

    def process(self, parameters, context, feedback):
        from geocodec.tasks.monitor import monitor_place

        source = self.parameterAsFile(parameters, "INPUT", context)
        head_name = self.parameterAsString(parameters, "HEAD", context)
        tile = self.parameterAsString(parameters, "TILE_ID", context)
        point = crs_text = None
        if not tile and parameters.get("POINT"):
            crs = self.parameterAsPointCrs(parameters, "POINT", context)
            pt = self.parameterAsPoint(parameters, "POINT", context, crs)
            point = [pt.x(), pt.y()]
            crs_text = _crs_text(crs)
        elif not tile:
            raise QgsProcessingException("give a place (point) or a tile id")
        feedback.setProgress(5)
        m = monitor_place(source, head_name, point=point, tile_id=tile or None, crs=crs_text)
        plot = self.parameterAsFileOutput(parameters, "PLOT", context)
        if plot:
            m.plot(plot)
        feedback.setProgress(85)
        for e in m.events:
            feedback.pushInfo("event " + e)
        dest = self.write_result(parameters, context, feedback, m.layer)
        return {"OUTPUT": dest, "PLOT": plot or None, "EVENTS": m.events}


def _crs_text(crs):
    """A QGIS CRS as text pyproj reads (authority code, else WKT), None when invalid."""
    return (crs.authid() or crs.toWkt()) if crs is not None and crs.isValid() else None


class Preview(GeocodecAlgorithm):
    NAME, LABEL = "preview", "Decode preview image (RGB GeoTIFF)"
    HELP = "The model's preview decoder turns the codes back into a Sentinel-2-like RGB image (B04, B03, B02)."

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_input()
        self.add_query()
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Preview"))

    def process(self, parameters, context, feedback):
        import numpy as np
        from qgis.core import QgsRasterBlock, QgsRasterFileWriter, QgsRectangle
        from qgis.PyQt.QtCore import QByteArray

        from geocodec.tasks.preview import preview_mosaic

        source = self.parameterAsFile(parameters, "INPUT", context)
        crs = _file_crs(source)
        bbox, time = self.query(parameters, context, crs)
        feedback.setProgress(5)
        m = preview_mosaic(source, bbox=bbox, time=time)
        if feedback.isCanceled():
            return {}
        rgb = (m.rgb() * 255).round().astype(np.uint8)           # (H, W, 3)
        valid = np.isfinite(m.data).all(axis=0)
        h, w = rgb.shape[:2]
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        x0, y1 = m.origin
        extent = QgsRectangle(x0, y1 - h * m.pixel_size, x0 + w * m.pixel_size, y1)
        writer = QgsRasterFileWriter(out)
        writer.setOutputFormat("GTiff")
        provider = writer.createMultiBandRaster(BYTE, w, h, extent, qgis_crs(crs), 4)
        if provider is None or not provider.isValid():
            raise QgsProcessingException(f"could not write {out}")
        bands = [rgb[..., 0], rgb[..., 1], rgb[..., 2], np.where(valid, 255, 0).astype(np.uint8)]
        for b, arr in enumerate(bands, start=1):
            block = QgsRasterBlock(BYTE, w, h)
            block.setData(QByteArray(np.ascontiguousarray(arr).tobytes()))
            provider.writeBlock(block, b, 0, 0)
        provider.setEditable(False)
        del provider
        feedback.setProgress(100)
        return {"OUTPUT": out, "WIDTH": w, "HEIGHT": h}


class Search(GeocodecAlgorithm):
    NAME, LABEL = "search", "Similar tiles (similarity search)"
    HELP = ("The k tiles whose decoded embeddings are most similar (cosine) to a tile (by id) or to the mean of "
            "the tiles a polygon layer covers; the layer is styled by score.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_input()
        self.addParameter(QgsProcessingParameterString("TILE_ID", "Query tile id", optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource("POLYGON", "…or query polygon(s)",
                                                              [SOURCE_POLYGON], optional=True))
        self.addParameter(QgsProcessingParameterNumber("K", "Number of results", defaultValue=10, minValue=1))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", "Similar tiles",
                                                            SOURCE_POLYGON))

    def process(self, parameters, context, feedback):
        import shapely

        from geocodec.tasks.search import Searcher

        source = self.parameterAsFile(parameters, "INPUT", context)
        k = self.parameterAsInt(parameters, "K", context)
        tile = self.parameterAsString(parameters, "TILE_ID", context) or None
        polygon = crs = None
        if not tile and parameters.get("POLYGON"):
            from qgis.core import QgsGeometry

            src = self.parameterAsSource(parameters, "POLYGON", context)
            geoms = [f.geometry() for f in src.getFeatures() if not f.geometry().isNull()]
            if not geoms:
                raise QgsProcessingException("the query layer has no geometry")
            polygon = shapely.from_wkt(QgsGeometry.unaryUnion(geoms).asWkt())
            crs = _crs_text(src.sourceCrs())
        elif not tile:
            raise QgsProcessingException("give a tile id or a query polygon layer")
        s = Searcher(source, progress=False)
        try:
            feedback.setProgress(40)
            tiles = s.query(tile_id=tile, polygon=polygon, crs=crs)
            result = s.result(tiles, k)
        finally:
            s.close()
        feedback.pushInfo(f"query: {tiles.how} ({len(tiles.rows)} tile(s))")
        dest = self.write_result(parameters, context, feedback, result)
        return {"OUTPUT": dest, "SCORES": result.table.column("score").to_pylist()}


class TrainHead(GeocodecAlgorithm):
    NAME, LABEL = "train_head", "Train a few-shot head and classify"
    HELP = ("Trains a linear head (numpy, in seconds) on the decoded embeddings of the tiles under labelled points "
            "or polygons, writes it as ONNX with its class names and colours, then classifies every tile with it.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_input()
        self.addParameter(QgsProcessingParameterFeatureSource("LABELS", "Labels (points or polygons)",
                                                              [SOURCE_ANY_GEOMETRY]))
        self.addParameter(QgsProcessingParameterField("FIELD", "Class field", parentLayerParameterName="LABELS"))
        p = QgsProcessingParameterNumber("STEPS", "Training steps", defaultValue=300, minValue=10)
        p.setFlags(p.flags() | FLAG_ADVANCED)
        self.addParameter(p)
        self.addParameter(QgsProcessingParameterFileDestination("HEAD", "Head", "ONNX (*.onnx)"))
        self.addParameter(QgsProcessingParameterFeatureSink("OUTPUT", "Classes", SOURCE_POLYGON))

    def process(self, parameters, context, feedback):
        import shapely

        from geocodec.tasks.classify import classify_file
        from geocodec.tasks.fewshot import train_head_from_labels
        from geocodec.tasks.labels import file_crs_and_bbox, prepare_labels

        source = self.parameterAsFile(parameters, "INPUT", context)
        src = self.parameterAsSource(parameters, "LABELS", context)
        field = self.parameterAsString(parameters, "FIELD", context)
        head_path = self.parameterAsFileOutput(parameters, "HEAD", context)
        geoms, values, ids = [], [], []
        for f in src.getFeatures():
            g = f.geometry()
            v = f[field]
            geoms.append(None if g.isNull() else shapely.from_wkt(g.asWkt()))
            values.append(None if v is None or (hasattr(v, "isNull") and v.isNull()) else v)
            ids.append(f.id())
        target, bbox = file_crs_and_bbox(source)
        labels = prepare_labels(geoms, values, crs=_crs_text(src.sourceCrs()), target_crs=target, bbox=bbox,
                                source=src.sourceName(), column=field, rows=ids)
        feedback.setProgress(10)
        rep = train_head_from_labels(source, labels, head_path,
                                     steps=self.parameterAsInt(parameters, "STEPS", context),
                                     training={"data": os.path.basename(source), "column": field,
                                               "command": "QGIS geocodec:train_head"})
        if rep["outside"]:
            feedback.reportError(f"{rep['outside']} label(s) fall on no tile and are ignored")
        feedback.pushInfo(f"head {head_path}: classes {rep['counts']}")
        feedback.setProgress(50)
        if feedback.isCanceled():
            return {}
        r = classify_file(source, head_path, progress=False)
        dest = self.write_result(parameters, context, feedback, r.layer)
        return {"OUTPUT": dest, "HEAD": head_path, "CLASSES": rep["classes"]}


ALGORITHMS = [LoadFile, Classify, Ships, Monitor, Preview, Search, TrainHead]
