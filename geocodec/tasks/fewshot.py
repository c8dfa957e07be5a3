"""Few-shot heads without torch: multinomial logistic regression in numpy, exported to ONNX.

Also holds :func:`mlp_onnx`, the ONNX builder every geocodec head uses (the torch-trained
heads of ``geocodec.training.heads`` are written through it too), so a head is plain
``MatMul``/``Add``/``Relu``/``Softmax`` nodes that any onnxruntime runs.

Consumer-safe: numpy + onnx.helper only.
"""

from __future__ import annotations

import datetime as _dt

import numpy as np

from geocodec.errors import InputError

PALETTE = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
           "#1f78b4", "#b2df8a", "#fb9a99", "#cab2d6"]


def mlp_onnx(layers: list[tuple[np.ndarray, np.ndarray]], *, input_shape: list, mean: np.ndarray, std: np.ndarray,
             flatten: bool, name: str, input_name: str = "input", output_name: str = "probabilities") -> bytes:
    """ONNX graph: ``x -> (flatten) -> (x - mean) / std -> [MatMul + Add + Relu]* -> MatMul + Add -> Softmax``.

    ``layers``: ``(W (in, out), b (out,))`` per layer; ``input_shape`` without the batch
    axis (``None`` for a free axis). Without ``flatten`` the layers act on the last axis
    (a per-date classifier over a ``(T, C)`` series, say).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.asarray(mean, np.float32), "mean"),
             numpy_helper.from_array((1.0 / np.maximum(np.asarray(std, np.float32), 1e-6)).astype(np.float32),
                                     "inv_std")]
    nodes = []
    cur = input_name
    if flatten:
        nodes.append(helper.make_node("Flatten", [cur], ["flat"], axis=1))
        cur = "flat"
    nodes += [helper.make_node("Sub", [cur, "mean"], ["centred"]),
              helper.make_node("Mul", ["centred", "inv_std"], ["h0"])]
    cur = "h0"
    for i, (w, b) in enumerate(layers):
        inits += [numpy_helper.from_array(np.asarray(w, np.float32), f"W{i}"),
                  numpy_helper.from_array(np.asarray(b, np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [cur, f"W{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"z{i}"])]
        cur = f"z{i}"
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [cur], [f"h{i + 1}"]))
            cur = f"h{i + 1}"
    nodes.append(helper.make_node("Softmax", [cur], [output_name], axis=-1))
    k = int(np.asarray(layers[-1][1]).shape[0])
    dims_in = ["N"] + [d if d is not None else f"d{j}" for j, d in enumerate(input_shape)]
    dims_out = ["N"] + ([] if flatten else [d if d is not None else f"d{j}" for j, d in enumerate(input_shape[:-1])]) + [k]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, dims_in)],
                              [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, dims_out)], inits)
    model = helper.make_model(graph, producer_name="geocodec", opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def mlp_forward(layers, x: np.ndarray, mean, std) -> np.ndarray:
    """numpy reference of :func:`mlp_onnx` (already flattened input)."""
    h = (np.asarray(x, np.float32) - mean) / np.maximum(std, 1e-6)
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    h = h - h.max(axis=-1, keepdims=True)
    e = np.exp(h)
    return e / e.sum(axis=-1, keepdims=True)


def fit_logistic(x: np.ndarray, y: np.ndarray, n_classes: int, *, l2: float = 1e-3, steps: int = 300,
                 lr: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Multinomial logistic regression with L2 on standardized inputs, full-batch gradient descent
    with Nesterov momentum. Returns (W, b, mean, std)."""
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.maximum(std, 1e-2 * std.max()) if std.max() > 0 else np.ones_like(std)
    z = (x - mean) / std
    n, d = z.shape
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), y] = 1.0
    counts = onehot.sum(axis=0)
    wts = (n / (n_classes * np.maximum(counts, 1)))[y]  # balanced classes
    wts /= wts.sum()
    w = np.zeros((d, n_classes))
    b = np.zeros(n_classes)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    mom = 0.9
    for _ in range(steps):
        wl, bl = w + mom * vw, b + mom * vb
        logits = z @ wl + bl
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) * wts[:, None]
        gw = z.T @ g + l2 * wl
        gb = g.sum(axis=0)
        vw = mom * vw - lr * gw
        vb = mom * vb - lr * gb
        w += vw
        b += vb
    return w.astype(np.float32), b.astype(np.float32), mean.astype(np.float32), std.astype(np.float32)


def train_head(embeddings: np.ndarray, labels, class_names: list[str] | None = None, *, codec: dict | None = None,
               colors: list[str] | None = None, l2: float = 1e-3, steps: int = 300, training: dict | None = None,
               input_kind: str = "embedding") -> bytes:
    """Train a linear classification head on embeddings ``(N, D)`` and return its ONNX bytes.

    ``labels``: class names (strings) or integer indices into ``class_names``.
    ``codec``: the ``geocodec:codec`` metadata (``name``, ``qualities``, ``model_sha256``,
    ``decoder_sha256`` of the file the embeddings came from), so the head refuses files
    of another decoder. The head carries the metadata of :mod:`geocodec.tasks.heads`
    (task ``custom``) and its training accuracy under ``geocodec:scores``.
    """
    from geocodec.tasks.heads import add_head_metadata

    x = np.asarray(embeddings, np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise InputError(f"embeddings must be (N, D) with N > 0, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError("embeddings contain NaN/inf")
    labels = np.asarray(labels)
    if len(labels) != len(x):
        raise InputError(f"{len(labels)} labels for {len(x)} embeddings")
    if labels.dtype.kind in "iu":
        if class_names is None:
            class_names = [str(i) for i in range(int(labels.max()) + 1)]
        y = labels.astype(np.int64)
    else:
        names = [str(v) for v in labels]
        if class_names is None:
            class_names = sorted(set(names))
        index = {c: i for i, c in enumerate(class_names)}
        unknown = sorted(set(names) - set(index))
        if unknown:
            raise InputError(f"labels {unknown} are not among the class names {class_names}")
        y = np.array([index[v] for v in names], np.int64)
    present = np.unique(y)
    if len(present) < 2:
        raise InputError(f"a head needs at least two classes; the labels hold only {[class_names[i] for i in present]}",
                         field="labels")
    k = len(class_names)
    w, b, mean, std = fit_logistic(x, y, k, l2=l2, steps=steps)
    onnx_bytes = mlp_onnx([(w, b)], input_shape=[x.shape[1]], mean=mean, std=std, flatten=False,
                          name="geocodec_fewshot_head")
    pred = mlp_forward([(w, b)], x, mean, std).argmax(axis=1)
    colors = colors or [PALETTE[i % len(PALETTE)] for i in range(k)]
    meta = {
        "task": "custom",
        "input": {"kind": input_kind, "shape": [int(x.shape[1])], "dimension": int(x.shape[1])},
        "output": {"kind": "class_probabilities", "names": list(class_names)},
        "classes": [{"name": c, "color": colors[i]} for i, c in enumerate(class_names)],
        "codec": codec or {},
        "training": {"method": "multinomial logistic regression, L2 "
                               f"{l2}, {steps} full-batch Nesterov steps, balanced class weights (numpy)",
                     "samples": int(len(x)), "per_class": {class_names[i]: int((y == i).sum()) for i in present},
                     "date": _dt.date.today().isoformat(), **(training or {})},
        "scores": {"training_accuracy": float((pred == y).mean())},
    }
    return add_head_metadata(onnx_bytes, meta)


def train_head_on_file(source, label_geometries, label_values, *, l2: float = 1e-3, steps: int = 300,
                       threads: int | None = None, training: dict | None = None) -> tuple[bytes, dict]:
    """Train a few-shot head from labelled geometries (shapely, in the file's CRS) over a geocodec file.

    A point labels the first tile footprint holding it (and that footprint's rows of other
    dates); a polygon labels every tile it intersects. Returns (ONNX bytes, report) with
    ``classes``, ``counts`` and ``outside`` (labels on no tile). Used by the QGIS plugin;
    ``geocodec train-head`` applies the same rule to a labels file.
    """
    import shapely

    from geocodec.format.dataset import GeocodecDataset

    ds = GeocodecDataset(source)
    try:
        tabs, embs = [], []
        for part in ds.iter_rows(None, ["geometry"], what="embeddings", threads=threads):
            tabs.append(shapely.from_wkb(part.table.column("geometry").to_numpy(zero_copy_only=False)))
            embs.append(part.values)
        ext = ds.files[0].ext
    finally:
        ds.close()
    if not tabs:
        raise InputError("the file holds no tiles", source=str(source))
    geoms = np.concatenate(tabs)
    emb = np.concatenate(embs)
    tree = shapely.STRtree(geoms)
    xs, ys, outside = [], [], 0
    for g, c in zip(label_geometries, label_values):
        if g is None or c is None:
            continue
        hit = tree.query(g, predicate="intersects")
        if g.geom_type == "Point" and len(hit):
            first = geoms[hit[0]]
            hit = hit[shapely.equals(geoms[hit], first)]
        if not len(hit):
            outside += 1
            continue
        xs.append(emb[hit])
        ys += [str(c)] * len(hit)
    if not xs:
        raise InputError(f"none of the {len(label_values)} labels falls on a tile of the file", source=str(source))
    classes = sorted(set(ys))
    if len(classes) < 2:
        raise InputError(f"the labels on the file's tiles hold a single class ({classes[0]!r}): a head needs two "
                         "or more", field="labels")
    codec = {"name": ext["codec"]["name"], "qualities": [ext["codec"].get("quality")],
             "model_sha256": (ext.get("model") or {}).get("sha256"), "decoder_sha256": ext["decoder"]["sha256"]}
    data = train_head(np.concatenate(xs), np.array(ys), classes, codec=codec, l2=l2, steps=steps,
                      training=training)
    return data, {"classes": classes, "counts": {c: ys.count(c) for c in classes}, "outside": outside,
                  "rows": len(ys)}


def train_head_from_labels(source, labels, output, *, l2: float = 1e-3, steps: int = 300,
                           threads: int | None = None, training: dict | None = None) -> dict:
    """Train a few-shot head on ``labels`` (:class:`geocodec.tasks.labels.Labels`, in the file's
    CRS) over the geocodec file or folder ``source`` and write it to ``output`` atomically.

    Returns the report of :func:`train_head_on_file` (``classes``, ``counts``, ``outside``,
    ``rows``) with ``labels`` (how many were given) and ``path``. Errors about the labels name
    their source and column.
    """
    import os

    from geocodec.atomic import atomic_output

    try:
        data, rep = train_head_on_file(source, labels.geometries, labels.values, l2=l2, steps=steps,
                                       threads=threads, training=training)
    except InputError as exc:
        if exc.field == "labels":
            raise InputError(exc.message, source=labels.source, row=exc.row, field=labels.column) from exc
        raise
    output = os.fspath(output)
    with atomic_output(output) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return {**rep, "labels": len(labels), "path": output}
