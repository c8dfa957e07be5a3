"""What a real openEO backend is sent: the process graph and its job options (openeo client, no connection)."""

from geocodec._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "build_graph": ".graph", "check_graph": ".graph", "job_options": ".graph", "udf_code": ".graph",
    "udf_path": ".graph",
})
