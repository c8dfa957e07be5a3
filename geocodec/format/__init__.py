"""The file format: GeoParquet 1.1 plus the ``emb`` and ``geocodec`` footer keys (``geoparquet_spec/SPEC.md``).

Integer tables and the rANS bitstream (:mod:`.entropy`), the checkerboard context model of spec
0.3.0 (:mod:`.context`) and the one object that picks between them (:mod:`.entropy_model`), footer metadata and its JSON Schema
(:mod:`.metadata`), the streaming writer (:mod:`.writer`), the reader: where files come from
(:mod:`.sources`: a file, a directory walked recursively, a URL), queries pushed down to row
groups (:mod:`.query`), code-block checks and parallel entropy decoding (:mod:`.blocks`), one
file and the reader API every task uses (:mod:`.reader`), many files as one (:mod:`.dataset`,
:mod:`.compat`); the ONNX decoder (:mod:`.onnx_model`), embedded or named by reference to a
published model and resolved safely (:mod:`.published`, :mod:`.hrefs`), and the file-level tools built
on them: validate, info, merge, STAC, plain float-vector GeoParquet. No torch, openeo or dask.
"""

from geocodec._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "IntegerTable": ".entropy", "encode_block": ".entropy", "decode_block": ".entropy",
    "cross_entropy_bits": ".entropy", "EntropyModel": ".entropy_model", "CheckerboardContext": ".context",
    "CodecSpec": ".metadata", "build_extension": ".metadata", "build_geo": ".metadata", "fingerprint": ".metadata",
    "GeocodecWriter": ".writer",
    "GeocodecFile": ".reader", "Rows": ".reader", "GeocodecDataset": ".dataset", "open_dataset": ".dataset",
    "Query": ".query", "expand_sources": ".sources", "is_url": ".sources", "merge_incompatibility": ".compat",
    "decode_code_columns": ".blocks", "shutdown_workers": ".blocks",
    "OnnxDecoder": ".onnx_model", "sha256_hex": ".onnx_model",
    "resolve_decoder": ".published", "resolve_tables": ".published", "cache_dir": ".published",
    "validate_file": ".validate", "summarize": ".info", "write_stac_item": ".stac", "write_stac": ".stac",
    "stac_item": ".stac", "stac_collection": ".stac",
    "read_embeddings": ".embeddings_io", "write_geoparquet": ".embeddings_io", "hilbert_order": ".hilbert",
})
