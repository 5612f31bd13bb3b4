"""The masked model: the original architecture with pruned channels cut off by zero weights.

Channels mix inside weighted ops and in reductions over channels (everything else the analysis lets
through acts per channel). Zeroing the weights through which pruned channels enter a weighted op,
and computing each reduction over the kept channels only (`masked_reductions.py`), makes them
unable to influence any kept channel. A removed block's branch output is multiplied by zero. The result
computes exactly what the pruned model computes: it is the exactness oracle for surgery, and a mask
for users who fine-tune in their own framework.
"""

from __future__ import annotations

import numpy as np
import onnx

from mdp_trt.graph.analyze import prepare
from mdp_trt.graph.structure import Structure
from mdp_trt.graph.view import GraphView, attributes, has_symbolic_sizes
from mdp_trt.prune.constants import ConstantEditor
from mdp_trt.prune.consumers import input_keep_mask
from mdp_trt.prune.masked_reductions import mask_reductions
from mdp_trt.prune.plan import Plan
from mdp_trt.prune.positions import features, kept_positions


def mask_model(model: onnx.ModelProto, structure: Structure, plan: Plan) -> onnx.ModelProto:
    plan.validate(structure)
    model = prepare(model)
    view = GraphView(model, infer_shapes=bool(structure.reductions), representative_sizes=has_symbolic_sizes(model))
    editor = ConstantEditor(model, view)
    kept = kept_positions(structure, plan)
    for layer in structure.weighted_layers:
        node = view.node_by_name[layer.name]
        source = node.input[0]
        weight = editor.get(node, 1)
        if source not in kept or layer.depthwise or weight is None:
            continue
        tc = structure.channels[source]
        keep = input_keep_mask(node.op_type, attributes(node), weight.shape, features(kept[source], tc.repeat),
                               len(tc.group) * tc.repeat)
        editor.set(node, 1, np.where(keep, weight, 0))
    mask_reductions(model, structure, kept, view, editor)
    editor.commit()
    _zero_removed_branches(model, structure, plan, view, editor)
    return model


def _zero_removed_branches(model: onnx.ModelProto, structure: Structure, plan: Plan, view: GraphView,
                           editor: ConstantEditor) -> None:
    for block_id in plan.remove_blocks:
        block = structure.block(block_id)
        add = view.node_by_name[block.add]
        dtype = view.dtypes.get(block.branch_output, onnx.TensorProto.FLOAT)
        zero = editor.add(f"{block.id}.mask", np.zeros((), dtype=onnx.helper.tensor_dtype_to_np_dtype(dtype)))
        masked = f"{block.branch_output}.masked"
        mul = onnx.helper.make_node("Mul", [block.branch_output, zero], [masked], name=f"{block.add}.mask")
        slot = list(add.input).index(block.branch_output)
        add.input[slot] = masked
        position = list(model.graph.node).index(add)
        model.graph.node.insert(position, mul)
