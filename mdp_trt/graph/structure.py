"""The result of structure analysis: channel groups, weighted layers and removable blocks.

These are plain, immutable records (no ONNX objects) so later stages (importance, latency probes,
the solver's Problem) can use them without touching the graph, and so they serialise to JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Layers of the latency model without weights (graph/attention.py): an attention's softmax(q @ k^T * scale)
# over (heads, qk_dim), and its attn @ v over (heads, v_dim).
ATTENTION_SCORES, ATTENTION_VALUES = "AttentionScores", "AttentionValues"
ATTENTION_OPS = (ATTENTION_SCORES, ATTENTION_VALUES)


@dataclass(frozen=True)
class Group:
    """Channels that must be pruned together (one class of coupled channel dimensions).

    Channel `i` of a group is the same channel in every tensor the group appears in; `keep` indices of
    a plan refer to this canonical order (the order in the group's first tensor). A group read or
    written by a grouped convolution (or a GroupNorm, or a reshape that splits the channel axis) has
    `parts` > 1: its canonical order runs part by part, and the pruned model keeps the same number of
    channels in each part, so that `group` (or the reshape) stays consistent.
    """

    id: str
    size: int
    prunable: bool
    reason: str | None
    producers: tuple[str, ...]  # weighted nodes whose output channels form the group
    consumers: tuple[str, ...]  # weighted nodes that read the group as input channels
    tensors: tuple[str, ...]  # tensors the group's channels live in
    parts: int = 1  # equal parts of size/parts consecutive channels; a plan keeps as many in each part
    # What the channels are: `heads` an attention's heads (one channel per head, tied to the parts of its
    # qk_dim and v_dim groups: `Structure.heads`), `qk_dim` the per-head width of attention's queries and
    # keys (q and k tied, each kept head keeping as many: `parts` is the head count), `v_dim` that of its
    # values (v and the output projection), `embedding` a transformer's residual stream (the token width
    # every block reads and adds to), `mlp_hidden` the hidden width of a transformer block's MLP,
    # `channels` anything else.
    kind: str = "channels"

    @property
    def part_size(self) -> int:
        return self.size // self.parts


@dataclass(frozen=True)
class EpilogueOp:
    """An op a backend fuses into the layer before it (BN, bias, activation)."""

    name: str
    op: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Segment:
    """A run of channels from one group inside a layer's input or output channel axis."""

    group: str
    size: int


@dataclass(frozen=True)
class Layer:
    """A weighted op (Conv, ConvTranspose, Gemm, MatMul with a constant weight), or one of an attention's two
    products (`ATTENTION_OPS`, no weight: input side the heads, output side a head width), as latency sees it.

    `in_group`/`out_group` are set when the whole input/output channel axis is one group; a layer that
    reads a Concat of several groups has `in_group=None` and its parts in `in_segments`.
    `in_repeat` is the number of input features per channel (Flatten of N,C,H,W into a Gemm: H*W).
    Shapes include the batch axis (None where symbolic) so latency probes can rebuild the layer.
    """

    name: str
    op: str
    in_group: str | None
    out_group: str | None
    in_channels: int
    out_channels: int
    in_segments: tuple[Segment, ...]
    out_segments: tuple[Segment, ...]
    in_repeat: int
    input_shape: tuple[int | None, ...]
    output_shape: tuple[int | None, ...]
    weight_shape: tuple[int, ...]
    has_bias: bool
    attrs: dict[str, Any]
    epilogue: tuple[EpilogueOp, ...]
    block: str | None  # innermost removable block that holds this layer
    depthwise: bool = False
    dtype: str = "float32"


@dataclass(frozen=True)
class Block:
    """A removable residual branch `y = x + F(x)`; removing it makes `y = x`.

    `nodes` are the branch's nodes (F, plus any scaling), `add` the residual Add node, `group` the
    channel group of the residual stream, `parent` the innermost block that contains this one.
    """

    id: str
    add: str
    input: str
    branch_output: str
    nodes: tuple[str, ...]
    group: str | None
    parent: str | None = None


@dataclass(frozen=True)
class TensorChannels:
    """Where each position on a tensor's channel axes lives: group index and channel index in it.

    Surgery uses this to turn a plan (kept channels per group) into kept positions per tensor.
    Most tensors carry channels on one axis. A reshape that splits the channel axis (a channel
    shuffle, GroupNorm) gives a tensor two channel axes; its positions are then the row-major flat
    index over both (`shape`), and `group`/`channel` are flat in that order.
    """

    axes: tuple[int, ...]
    repeats: tuple[int, ...]
    shape: tuple[int, ...]  # channel indices along each channel axis
    group: np.ndarray  # index into Structure.groups, per position
    channel: np.ndarray  # canonical channel index inside that group, per position

    @property
    def single(self) -> bool:
        return len(self.axes) == 1

    @property
    def axis(self) -> int:
        """The channel axis of a tensor with one channel axis."""
        assert self.single, "a tensor with two channel axes"
        return self.axes[0]

    @property
    def repeat(self) -> int:
        assert self.single, "a tensor with two channel axes"
        return self.repeats[0]


@dataclass(frozen=True)
class Reduction:
    """A node that reduces or normalises over channels (LayerNorm over C, a mean over C, GroupNorm).

    The pruned model computes it over the kept channels; the masked model must do the same, so it
    rewrites these nodes with masks (`mdp_trt.prune.masked`).
    """

    node: str
    input: str


@dataclass(frozen=True)
class Pinned:
    """A scalar the exporter computes from a channel count and applies to data, held at its value.

    PyTorch's `scaled_dot_product_attention` exports its softmax temperature as `1 / sqrt(Shape(q)[-1])`:
    in the pruned model that would read the pruned head width. The masked original, and the model the
    user trained, use the original one, so surgery writes `value` (`input` of `node`) as a constant.
    """

    node: str
    input: str
    value: np.ndarray = field(compare=False)


@dataclass(frozen=True)
class HeadsTie:
    """An attention's heads: group `heads` (one channel per head) and the groups in `members` (its
    query/key and value head widths) whose parts are those heads, in the same order (`graph.heads`).

    A plan keeps head i in all of them or in none: part i of every member keeps channels exactly when
    channel i of `heads` is kept, and every kept part keeps as many.
    """

    heads: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class Structure:
    """Channel groups, layers and blocks of one model, with lookups by id."""

    groups: tuple[Group, ...]
    layers: tuple[Layer, ...]
    blocks: tuple[Block, ...]
    channels: dict[str, TensorChannels] = field(default_factory=dict, repr=False, compare=False)
    reductions: tuple[Reduction, ...] = ()
    pinned: tuple[Pinned, ...] = ()
    # Reshapes whose computed target surgery rewrites on the output's channel axes (graph/shape_reads.py)
    channel_targets: tuple[str, ...] = ()
    heads: tuple[HeadsTie, ...] = ()  # attentions whose heads are a group of their own

    def group(self, group_id: str) -> Group:
        return self._groups_by_id()[group_id]

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def block(self, block_id: str) -> Block:
        for block in self.blocks:
            if block.id == block_id:
                return block
        raise KeyError(block_id)

    def heads_tie(self, heads: str) -> HeadsTie:
        """The attention whose heads are group `heads`."""
        return next(t for t in self.heads if t.heads == heads)

    def _groups_by_id(self) -> dict[str, Group]:
        return {g.id: g for g in self.groups}

    @property
    def weighted_layers(self) -> tuple[Layer, ...]:
        """The layers that hold weights (the attention products, timed as layers, hold none)."""
        return tuple(la for la in self.layers if la.op not in ATTENTION_OPS)

    @property
    def prunable_groups(self) -> tuple[Group, ...]:
        return tuple(g for g in self.groups if g.prunable)

    def to_json(self) -> dict[str, Any]:
        """The `analyze --json` document."""
        return {
            "groups": [
                {
                    "id": g.id,
                    "size": g.size,
                    "parts": g.parts,
                    "kind": g.kind,
                    "prunable": g.prunable,
                    "reason": g.reason,
                    "producers": list(g.producers),
                    "consumers": list(g.consumers),
                }
                for g in self.groups
            ],
            "layers": [
                {"name": la.name, "op": la.op, "in_group": la.in_group, "out_group": la.out_group}
                for la in self.layers
            ],
            "blocks": [{"id": b.id, "nodes": list(b.nodes), "group": b.group} for b in self.blocks],
            "heads": [{"heads": t.heads, "members": list(t.members)} for t in self.heads],
        }
