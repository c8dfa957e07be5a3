"""Static checks of an ONNX model from a file before onnxruntime runs it (decoders and task heads).

A decoder comes from a stranger's file, so it is checked before any session is built (SPEC.md §9):

* **no file access**: no tensor with external data (``data_location == EXTERNAL`` or ``external_data``
  entries; onnxruntime would read that path relative to the current directory), in the main graph, in
  every subgraph attribute, in model-local functions and in training graphs; no model-local functions or
  training graphs at all; only the default operator domain (``ai.onnx.ml``, ``com.microsoft`` and custom
  domains are refused: ``com.microsoft.EPContext`` alone can name a file to read);
* **no control flow, only known operators**: every node's operator is in :data:`ALLOWED_OPS` (what the
  reference linear decoder, the learned embedding decoder, the shipped heads and the few-shot heads use,
  plus a few element-wise and pooling operators); no graph-valued attributes, no sparse tensors;
* **input and output as declared**: one input (``input_name``), float32, a dynamic batch axis and the
  declared static dims; the outputs float32, the declared one shaped ``[N, *output_shape]``;
* **bounded work**: ONNX shape inference (strict, with data propagation) on the model with the declared
  input dims must give every tensor a static shape apart from the batch axis (and the input's other
  dynamic axes, each at most once per tensor); the bytes of all tensors per input row, the bytes of all
  batch-independent tensors and the multiply-adds per row are bounded (:data:`MAX_ROW_BYTES`,
  :data:`MAX_FIXED_BYTES`, :data:`MAX_ROW_MACS`). :class:`geocodec.format.onnx_model.OnnxDecoder` then runs
  a batch in slices of at most :data:`MAX_CALL_BYTES`.

Everything is a :class:`UnsafeModelError` naming the file, the field and the tensor or operator.
"""

from __future__ import annotations

from dataclasses import dataclass

from geocodec.errors import MetadataError

#: Operators a checked model may use (default ONNX domain only). Collected from the reference linear
#: decoder (MatMul, Add), the learned embedding decoder (Conv, Relu, ReduceMean, ReduceMax, Concat, Gemm),
#: the shipped and few-shot heads (Flatten, Sub, Mul, Softmax, Constant, Gather, Sigmoid, ReduceSum), plus
#: element-wise and pooling operators without control flow, file access or data-dependent output shapes.
ALLOWED_OPS = frozenset({
    "Add", "Concat", "Constant", "Conv", "Flatten", "Gather", "Gemm", "MatMul", "Mul", "ReduceMax",
    "ReduceMean", "ReduceSum", "Relu", "Sigmoid", "Softmax", "Sub",
    "Abs", "AveragePool", "Clip", "Div", "Exp", "GlobalAveragePool", "GlobalMaxPool", "Identity",
    "LeakyRelu", "Log", "MaxPool", "Neg", "Sqrt", "Tanh",
})
MAX_NODES = 10_000                  # nodes in the graph
MAX_ROW_BYTES = 64 * 2**20          # all tensors per input row (the shipped models: under 1 MiB)
MAX_FIXED_BYTES = 256 * 2**20       # all tensors that do not grow with the batch
MAX_ROW_MACS = 2**30                # multiply-adds per input row (the ships head: 38 million)
MAX_CALL_BYTES = 1 * 2**30          # tensor bytes of one onnxruntime call: batches are sliced to fit
BATCH = "N"
_DEFAULT_DOMAINS = ("", "ai.onnx")


class UnsafeModelError(MetadataError):
    """An ONNX model from a file that reads other files, loops, allocates without bound or breaks its contract."""


@dataclass
class ModelCheck:
    """What :func:`check_model` found: ``data`` the checked model re-serialized (what onnxruntime is given),
    ``row_bytes`` (tensor bytes per input row, an upper bound), ``fixed_bytes``, ``row_macs`` and ``ops``."""

    data: bytes
    row_bytes: int
    fixed_bytes: int
    row_macs: int
    ops: frozenset

    @property
    def max_rows(self) -> int:
        """The most rows one onnxruntime call may take so its tensors stay within :data:`MAX_CALL_BYTES`."""
        return max(1, MAX_CALL_BYTES // max(1, self.row_bytes))


def parse_model(data: bytes, *, source: str, field: str):
    """The ``onnx.ModelProto`` in ``data``; :class:`UnsafeModelError` if it is not one."""
    import onnx

    try:
        model = onnx.ModelProto.FromString(bytes(data))
    except Exception as exc:  # protobuf's DecodeError and friends
        raise UnsafeModelError(f"not a loadable ONNX model: {exc}", source=source, field=field) from exc
    if not model.HasField("graph"):
        raise UnsafeModelError("not a loadable ONNX model: no graph", source=source, field=field)
    return model


def _graphs(model):
    """(where, GraphProto) for the main graph, every nested subgraph, function bodies and training graphs."""
    stack = [("graph", model.graph)]
    for info in model.training_info:
        stack += [("training_info.initialization", info.initialization), ("training_info.algorithm", info.algorithm)]
    while stack:
        where, g = stack.pop()
        yield where, g
        for node in g.node:
            for a in node.attribute:
                if a.HasField("g"):
                    stack.append((f"{where}/{node.op_type}.{a.name}", a.g))
                stack += [(f"{where}/{node.op_type}.{a.name}", sub) for sub in a.graphs]


def _tensors(model):
    """(where, TensorProto) of every tensor the model holds, anywhere."""
    for where, g in _graphs(model):
        for t in g.initializer:
            yield f"{where} initializer", t
        for s in g.sparse_initializer:
            yield f"{where} sparse initializer", s.values
            yield f"{where} sparse initializer", s.indices
        for node in g.node:
            yield from _attribute_tensors(f"{where} node {node.name or node.op_type}", node)
    for fn in model.functions:
        for node in fn.node:
            yield from _attribute_tensors(f"function {fn.name} node {node.name or node.op_type}", node)


def _attribute_tensors(where, node):
    for a in node.attribute:
        if a.HasField("t"):
            yield where, a.t
        yield from ((where, t) for t in a.tensors)
        if a.HasField("sparse_tensor"):
            yield where, a.sparse_tensor.values
            yield where, a.sparse_tensor.indices
        for s in a.sparse_tensors:
            yield where, s.values
            yield where, s.indices


def check_no_external_data(model, *, source: str, field: str) -> None:
    """Refuse a model with any tensor stored as external data (a path onnxruntime would open)."""
    from onnx import TensorProto

    for where, t in _tensors(model):
        if t.data_location == TensorProto.EXTERNAL or len(t.external_data):
            entries = {e.key: e.value for e in t.external_data}
            target = entries.get("location", "(no location)")
            raise UnsafeModelError(
                f"tensor '{t.name}' ({where}) keeps its data in the external file '{target}': a model from a file "
                "may not read other files; refused", source=source, field=field)


def _dims(vi):
    """The dims of a ValueInfoProto as ints, symbol names, or None (unknown); None when rank is unknown."""
    tt = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
    if tt is None or not tt.HasField("shape"):
        return None
    out = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def _elem_type(vi) -> int | None:
    return vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else None


def _itemsize(elem_type: int) -> int | None:
    from onnx import TensorProto, helper

    if elem_type in (TensorProto.UNDEFINED, TensorProto.STRING):
        return None
    try:
        import numpy as np

        return int(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)
    except Exception:  # an element type numpy has no dtype for (e.g. float8): 1 byte is its size
        return 1


def _structure(model, *, source: str, field: str) -> frozenset:
    """Domains, functions, training graphs, node count, operators and attributes; the operators used."""
    from onnx import AttributeProto

    if len(model.functions):
        raise UnsafeModelError(f"the model defines local functions ({model.functions[0].name}, ...); refused",
                               source=source, field=field)
    if len(model.training_info):
        raise UnsafeModelError("the model carries training graphs (training_info); refused", source=source,
                               field=field)
    for op in model.opset_import:
        if op.domain not in _DEFAULT_DOMAINS:
            raise UnsafeModelError(f"the model imports operator domain '{op.domain}': only the default ONNX "
                                   "domain is allowed", source=source, field=field)
    g = model.graph
    if len(g.node) > MAX_NODES:
        raise UnsafeModelError(f"the graph has {len(g.node)} nodes, more than {MAX_NODES}", source=source, field=field)
    if len(g.sparse_initializer):
        raise UnsafeModelError(f"sparse initializer '{g.sparse_initializer[0].values.name}': sparse tensors are "
                               "not allowed", source=source, field=field)
    ops = set()
    for node in g.node:
        name = f"node '{node.name}' " if node.name else ""
        if node.domain not in _DEFAULT_DOMAINS:
            raise UnsafeModelError(f"{name}operator '{node.domain}.{node.op_type}' is not in the default ONNX "
                                   "domain; refused", source=source, field=field)
        if node.op_type not in ALLOWED_OPS:
            kind = " (control flow)" if node.op_type in ("Loop", "If", "Scan") else ""
            raise UnsafeModelError(f"{name}operator '{node.op_type}'{kind} is not allowed in a model from a file; "
                                   f"allowed: {', '.join(sorted(ALLOWED_OPS))}", source=source, field=field)
        for a in node.attribute:
            if a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) or a.HasField("g") or len(a.graphs):
                raise UnsafeModelError(f"{name}operator '{node.op_type}' has a subgraph attribute '{a.name}'",
                                       source=source, field=field)
            if a.type in (AttributeProto.SPARSE_TENSOR, AttributeProto.SPARSE_TENSORS) or \
                    a.HasField("sparse_tensor") or len(a.sparse_tensors):
                raise UnsafeModelError(f"{name}operator '{node.op_type}' has a sparse tensor attribute "
                                       f"'{a.name}': not allowed", source=source, field=field)
            if a.ref_attr_name:
                raise UnsafeModelError(f"{name}attribute '{a.name}' refers to a function attribute",
                                       source=source, field=field)
        ops.add(node.op_type)
    return frozenset(ops)


def _graph_inputs(g) -> list:
    inits = {t.name for t in g.initializer}
    return [i for i in g.input if i.name not in inits]


def _set_input_dims(vi, declared, *, source: str, field: str) -> set:
    """Check input ``vi`` against ``declared`` (dims after the batch axis: int or None) and rewrite its shape with
    the declared static dims, ``N`` for the batch and ``d<i>`` for the dynamic ones; the symbols used."""
    from onnx import TensorProto

    if _elem_type(vi) != TensorProto.FLOAT:
        raise UnsafeModelError(f"input '{vi.name}' must be float32 (ONNX element type {_elem_type(vi)})",
                               source=source, field=field)
    dims = _dims(vi)
    if dims is None or len(dims) != 1 + len(declared):
        raise UnsafeModelError(f"input '{vi.name}' has shape {dims}, expected [N, {', '.join(map(str, declared))}] "
                               "(rank " f"{1 + len(declared)})", source=source, field=field)
    if isinstance(dims[0], int):
        raise UnsafeModelError(f"input '{vi.name}' has a static batch axis of {dims[0]}: it must be dynamic",
                               source=source, field=field)
    symbols = {BATCH}
    new = [BATCH]
    for i, (have, want) in enumerate(zip(dims[1:], declared), start=1):
        if want is not None and isinstance(have, int) and have != want:
            raise UnsafeModelError(f"input '{vi.name}' axis {i} is {have}, the file declares {want}",
                                   source=source, field=field)
        if want is not None:
            new.append(int(want))
        elif isinstance(have, int):
            new.append(have)
        else:
            new.append(f"d{i}")
            symbols.add(f"d{i}")
    shape = vi.type.tensor_type.shape
    for d, v in zip(shape.dim, new):
        d.Clear()
        if isinstance(v, int):
            d.dim_value = v
        else:
            d.dim_param = v
    return symbols


def _size(name: str, vi, symbols: set, producer: str, *, source: str, field: str) -> tuple[int, bool]:
    """(static bytes, grows with the batch) of a tensor; refuses unknown, unbounded or repeated-symbol shapes."""
    what = f"tensor '{name}' (output of {producer})"
    if vi is None or not vi.type.HasField("tensor_type"):
        raise UnsafeModelError(f"{what} has no inferable type: its size cannot be bounded", source=source, field=field)
    dims = _dims(vi)
    size = _itemsize(_elem_type(vi))
    if dims is None or size is None:
        raise UnsafeModelError(f"{what} has no inferable shape or element size: its size cannot be bounded",
                               source=source, field=field)
    seen = set()
    elements = 1
    for d in dims:
        if isinstance(d, int):
            elements *= d
        elif d in symbols and d not in seen:
            seen.add(d)
        else:
            raise UnsafeModelError(f"{what} has shape {dims}: not static apart from the batch axis, so what it "
                                   "allocates cannot be bounded", source=source, field=field)
    return elements * size, bool(seen)


def _macs(node, shapes: dict) -> int:
    """Multiply-adds per row (or in all, for a batch-independent node) of MatMul, Gemm and Conv; 0 for others."""
    out = shapes.get(node.output[0]) if node.output else None
    if out is None or node.op_type not in ("MatMul", "Gemm", "Conv"):
        return 0
    out_elems = 1
    for d in out:
        out_elems *= d if isinstance(d, int) else 1
    a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
    if node.op_type == "MatMul":
        k = a[-1] if a else 1
    elif node.op_type == "Gemm":
        trans_a = next((x.i for x in node.attribute if x.name == "transA"), 0)
        k = (a[0] if trans_a else a[-1]) if a else 1
    else:  # Conv: weight [M, C/group, k1, k2, ...]
        k = 1
        for d in (b or [])[1:]:
            k *= d if isinstance(d, int) else 1
    return out_elems * (k if isinstance(k, int) else 1)


def check_model(data: bytes, *, source: str, field: str = "decoder", input_name: str | None = None,
                input_shape=None, output_name: str | None = None, output_shape=None,
                single_output: bool = False) -> ModelCheck:
    """Check ONNX ``data`` from a file before it runs (see the module docstring); the :class:`ModelCheck`.

    ``input_shape``/``output_shape``: the declared dims after the batch axis (int, or None for a dynamic axis);
    None: any rank (``input_shape``) or no output shape check. ``input_name``/``output_name``: the declared names
    (None: the model's only input / every output). ``single_output``: the model must have exactly one output.
    Raises :class:`UnsafeModelError` naming ``source``, ``field`` and what is refused.
    """
    import onnx
    from onnx import TensorProto

    model = parse_model(data, source=source, field=field)
    check_no_external_data(model, source=source, field=field)
    ops = _structure(model, source=source, field=field)
    clean = model.SerializeToString()

    g = model.graph
    inputs = _graph_inputs(g)
    if len(inputs) != 1 or (input_name is not None and inputs[0].name != input_name):
        raise UnsafeModelError(f"the model has inputs {[i.name for i in inputs]}; expected exactly one"
                               + (f", named '{input_name}'" if input_name else ""), source=source, field=field)
    outputs = list(g.output)
    names = [o.name for o in outputs]
    if not outputs or (single_output and len(outputs) != 1) or (output_name is not None and output_name not in names):
        raise UnsafeModelError(f"the model has outputs {names}; expected "
                               + ("exactly one" if single_output else "at least one")
                               + (f", named '{output_name}'" if output_name else ""), source=source, field=field)
    if input_shape is None:
        dims = _dims(inputs[0])
        input_shape = [d if isinstance(d, int) else None for d in (dims or [None])[1:]]
    symbols = _set_input_dims(inputs[0], list(input_shape), source=source, field=field)
    for o in outputs:  # the declared output shapes are re-derived by inference, not trusted
        o.type.tensor_type.ClearField("shape")
    del g.value_info[:]
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:  # InferenceError, ValidationError, or a protobuf error
        raise UnsafeModelError(f"ONNX shape inference fails on the declared input shape: {exc}", source=source,
                               field=field) from exc
    gi = inferred.graph
    infos = {v.name: v for v in [*gi.input, *gi.value_info, *gi.output]}
    shapes = {name: _dims(v) for name, v in infos.items()}
    for t in gi.initializer:
        shapes.setdefault(t.name, [int(d) for d in t.dims])
    row_bytes = fixed_bytes = row_macs = fixed_macs = 0
    nbytes, grows = _size(inputs[0].name, infos.get(inputs[0].name), symbols, "the input", source=source, field=field)
    row_bytes += nbytes
    for node in gi.node:
        producer = f"{node.op_type}" + (f" node '{node.name}'" if node.name else "")
        batch_node = False
        for out in node.output:
            if not out:
                continue
            nbytes, grows = _size(out, infos.get(out), symbols, producer, source=source, field=field)
            batch_node |= grows
            if grows:
                row_bytes += nbytes
            else:
                fixed_bytes += nbytes
        macs = _macs(node, shapes)
        if batch_node:
            row_macs += macs
        else:
            fixed_macs += macs
        if row_bytes > MAX_ROW_BYTES:
            raise UnsafeModelError(f"the tensors up to {producer} take {row_bytes} bytes per input row, more than "
                                   f"{MAX_ROW_BYTES}", source=source, field=field)
        if fixed_bytes > MAX_FIXED_BYTES:
            raise UnsafeModelError(f"the batch-independent tensors up to {producer} take {fixed_bytes} bytes, more "
                                   f"than {MAX_FIXED_BYTES}", source=source, field=field)
        if row_macs > MAX_ROW_MACS or fixed_macs > MAX_ROW_MACS:
            raise UnsafeModelError(f"the model takes more than {MAX_ROW_MACS} multiply-adds per row (at {producer})",
                                   source=source, field=field)
    for o in gi.output:
        if _elem_type(o) != TensorProto.FLOAT:
            raise UnsafeModelError(f"output '{o.name}' must be float32 (ONNX element type {_elem_type(o)})",
                                   source=source, field=field)
        dims = shapes.get(o.name)
        if not dims or dims[0] != BATCH:
            raise UnsafeModelError(f"output '{o.name}' has shape {dims}: its first axis must be the input's batch "
                                   "axis", source=source, field=field)
        if output_shape is not None and (output_name is None or o.name == output_name):
            want = [BATCH, *output_shape]
            if len(dims) != len(want) or any(w is not None and d != w for d, w in zip(dims, want)):
                raise UnsafeModelError(f"output '{o.name}' has shape {dims} on the declared input, expected "
                                       f"{['N' if w == BATCH else w for w in want]}", source=source, field=field)
    return ModelCheck(data=clean, row_bytes=row_bytes, fixed_bytes=fixed_bytes, row_macs=row_macs, ops=ops)
