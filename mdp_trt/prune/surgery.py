"""Pruning surgery: cut a plan's channels and blocks out of an ONNX graph.

Each tensor's kept positions come from the plan (`positions.py`); each node then slices the constants
it holds along the axes that carry those channels (`surgeon.py`). Removed blocks become `y = x`. The result is
checked with the full ONNX checker before it is returned, so a broken graph never leaves this module.
"""

from __future__ import annotations

import onnx

from mdp_trt.errors import VerificationError
from mdp_trt.graph.analyze import prepare
from mdp_trt.graph.structure import Structure
from mdp_trt.graph.view import GraphView, has_symbolic_sizes, skeleton
from mdp_trt.prune.cleanup import remove_dead_nodes, rewire_identities
from mdp_trt.prune.constants import ConstantEditor
from mdp_trt.prune.plan import Plan
from mdp_trt.prune.positions import kept_positions
from mdp_trt.prune.surgeon import Surgeon


class SurgeryError(VerificationError):
    """The pruned graph failed validation: a bug in mdp-trt, reported instead of writing a bad file
    (exit code 4, as every model refused before it is written)."""


def prune_model(model: onnx.ModelProto, structure: Structure, plan: Plan,
                check: bool = True) -> onnx.ModelProto:
    """A new model with the plan's channels and blocks removed; the input model is not modified."""
    plan.validate(structure)
    model = prepare(model)
    bypassed = _bypass_blocks(model, structure, plan)
    remove_dead_nodes(model)
    view = GraphView(model, representative_sizes=has_symbolic_sizes(model))  # static bounds at any batch
    kept = kept_positions(structure, plan)
    editor = ConstantEditor(model, view)
    surgeon = Surgeon(view, structure, kept, editor)
    for node in model.graph.node:
        surgeon.slice(node)
    _insert_before(model, surgeon.inserted)
    editor.commit()
    rewire_identities(model, bypassed)
    remove_dead_nodes(model)
    del model.graph.value_info[:]
    if check:
        validate(model)
    return model


def _insert_before(model: onnx.ModelProto, inserted: list[tuple[str, onnx.NodeProto]]) -> None:
    """Place nodes surgery added (computed shapes it rewrote) right before the node that reads them."""
    for before, new in inserted:
        position = [n.name for n in model.graph.node].index(before)
        model.graph.node.insert(position, new)


def validate(model: onnx.ModelProto) -> None:
    """Full ONNX check (structure, types, strict shape inference) of the graph and its weights' shapes.

    It checks the weightless skeleton (weights become typed inputs of the same shapes), so validation
    costs no copy of the weights.
    """
    try:
        onnx.checker.check_model(skeleton(model), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SurgeryError(f"internal error: the pruned graph failed ONNX validation ({first}); "
                           "please report this model") from None


def _bypass_blocks(model: onnx.ModelProto, structure: Structure, plan: Plan) -> set[str]:
    """Turn each removed block's Add into Identity(x); returns the names of those Identity nodes."""
    adds = {structure.block(bid).add: structure.block(bid) for bid in plan.remove_blocks}
    bypassed: set[str] = set()
    for node in model.graph.node:
        block = adds.get(node.name)
        if block is None:
            continue
        output = node.output[0]
        node.Clear()
        node.CopyFrom(onnx.helper.make_node("Identity", [block.input], [output], name=block.add))
        bypassed.add(node.name)
    return bypassed
