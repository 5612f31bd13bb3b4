"""Whether the installed onnx and ONNX Runtime can read a model: its IR version and every op it uses.

A model that uses an op its opset does not define (`LayerNormalization` at opset 12, a made-up
`FooBar`), gives an op an attribute its opset does not know (`Split`'s `num_outputs` at opset 17, which
torch's dynamo exporter leaves behind when it converts its opset-18 graph down), or that is written in
an IR version newer than the tools here, loads fine as a protobuf and
fails much later: in shape inference, in a probe, or when ONNX Runtime refuses the pruned model. These
checks let `load_model` refuse it at once, naming the node and the op. Ops are looked up in onnx's own
schema registry (`onnx.defs`), never in a hand-written list, so a newer onnx knows newer ops.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping

import onnx
from onnx import helper

from mdp_trt.errors import InputError

MIN_IR_VERSION = 3  # the ONNX checker (which every pruned model passes) refuses anything older
# Every onnxruntime this package supports (>= 1.18) loads IR 10; only newer IR versions are probed.
ORT_SAFE_IR_VERSION = 10
_DEFAULT_DOMAINS = ("", "ai.onnx")
# Domains whose ops onnx's schema registry defines (the rest are custom: com.microsoft, a vendor's).
_ONNX_DOMAINS = frozenset({"", "ai.onnx.ml", "ai.onnx.preview", "ai.onnx.preview.training"})


def check_ir_version(model: onnx.ModelProto, label: str = "model") -> None:
    """Refuse an IR version the installed onnx or onnxruntime cannot read."""
    version = int(model.ir_version)
    if MIN_IR_VERSION <= version <= onnx.IR_VERSION and (version <= ORT_SAFE_IR_VERSION or _ort_loads_ir(version)):
        return
    newest = max_ir_version()
    hint = ("upgrade onnx and onnxruntime, or save the model at an older IR version" if version > newest
            else "re-export the model with a current exporter")
    raise InputError(f"{label}: unsupported IR version {version} (supported here: {MIN_IR_VERSION} to {newest}; "
                     f"{hint})")


def max_ir_version() -> int:
    """The newest IR version both the installed onnx and onnxruntime read."""
    for version in range(onnx.IR_VERSION, ORT_SAFE_IR_VERSION, -1):
        if _ort_loads_ir(version):
            return version
    return min(onnx.IR_VERSION, ORT_SAFE_IR_VERSION)


@functools.cache
def _ort_loads_ir(version: int) -> bool:
    """Whether onnxruntime loads a one-node model of this IR version (True when it is not installed:
    then only onnx's limit applies). onnxruntime has no API that says; a load takes a few milliseconds."""
    try:
        import onnxruntime as ort
    except ImportError:
        return True
    value = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [value],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    probe.ir_version = version
    try:
        ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception:  # onnxruntime raises its own exception types, all plain Exception subclasses
        return False
    return True


def check_ops(model: onnx.ModelProto, label: str = "model") -> None:
    """Refuse a node whose op its domain does not define (or deprecates) at the model's opset.

    Nodes inside subgraphs (If, Loop, Scan) are checked the same way. Ops defined by the model's local
    functions are fine, and so are custom domains (com.microsoft, a vendor's): analysis freezes what it
    does not know, and the backend says whether it can run them. A node of a domain the model does not
    import is refused, as onnx and onnxruntime both would.
    """
    imports = _imports(model.opset_import)
    local = {(_domain(f.domain), f.name) for f in model.functions}
    for node, where in _nodes(model.graph, ""):
        _check_node(node, where, imports, local, label)
    for function in model.functions:
        inner = {**imports, **_imports(function.opset_import)}
        for node in function.node:
            _check_node(node, f" (in function '{function.name}')", inner, local, label)


def _check_node(node: onnx.NodeProto, where: str, imports: Mapping[str, int], local: set[tuple[str, str]],
                label: str) -> None:
    domain = _domain(node.domain)
    if (domain, node.op_type) in local:
        return
    subject = f"{label}: node {_node_name(node)}{where}"
    if domain not in imports:
        raise InputError(f"{subject} uses op '{node.op_type}' of domain '{domain}', which the model does not "
                         "import (opset_import)")
    if domain not in _ONNX_DOMAINS:
        return
    version = imports[domain]
    owner = "the default ONNX domain" if domain == "" else f"ONNX domain '{domain}'"
    if not onnx.defs.has(node.op_type, version, domain):
        raise InputError(f"{subject} uses op '{node.op_type}', which {owner} does not define at opset {version}")
    schema = onnx.defs.get_schema(node.op_type, version, domain)
    if schema.deprecated:
        raise InputError(f"{subject} uses op '{node.op_type}', which {owner} deprecates at opset {version}")
    unknown = [a.name for a in node.attribute if a.name not in schema.attributes]
    if unknown:  # e.g. Split's num_outputs (opset 18) left behind by a conversion down to opset 17
        raise InputError(f"{subject} gives {node.op_type} the attribute '{unknown[0]}', which {node.op_type} does not "
                         f"take at opset {version}, so ONNX Runtime refuses the model too (torch's dynamo exporter "
                         "writes this when asked for an opset below 18: export with opset_version=18 or newer, or "
                         "with dynamo=False)")


def _nodes(graph: onnx.GraphProto, where: str) -> Iterator[tuple[onnx.NodeProto, str]]:
    """Every node of the graph and of its nested subgraphs, with where it sits (for messages)."""
    for node in graph.node:
        yield node, where
        for attr in node.attribute:
            subgraphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subgraphs:
                yield from _nodes(sub, f" (in subgraph '{attr.name}' of node {_node_name(node)}{where})")


def _imports(entries: Iterable[onnx.OperatorSetIdProto]) -> dict[str, int]:
    return {_domain(e.domain): int(e.version) for e in entries}


def _domain(domain: str) -> str:
    return "" if domain in _DEFAULT_DOMAINS else domain


def _node_name(node: onnx.NodeProto) -> str:
    return f"'{node.name}'" if node.name else f"(unnamed, output '{node.output[0] if node.output else '?'}')"
