"""Channel propagation: which channel of which tensor is the same channel as which other.

Every tensor with channels gets a `ChannelMap`: one channel id per position on its channel axes.
Weighted ops create fresh ids for their outputs; ops that act per channel pass ids through; ops that
tie channels of two tensors (Add, Mul, ...) union their ids; Concat, Split, Slice and reshapes move
them around. Two more kinds of facts are recorded for later stages: *parts* (a grouped convolution,
GroupNorm or a split of the channel axis keeps the same number of channels in every row of an id
array) and *reductions* (nodes that reduce or normalise over channels, which the masked model must
compute over the kept channels only). Anything we cannot reason about freezes the channels it
touches, with the op named in the reason, so an unknown op can only make the analysis more
conservative, never wrong.

This module is the walker; the rules for each op family live in `mdp_trt.graph.rules`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from mdp_trt.graph.channelmap import ChannelMap
from mdp_trt.graph.structure import Pinned, Reduction
from mdp_trt.graph.unionfind import UnionFind
from mdp_trt.graph.view import GraphView

Rule = Callable[["Walker", onnx.NodeProto], None]
SHAPE_READERS = frozenset({"Shape", "Size", "Constant"})


@dataclass
class WeightedUse:
    """A weighted op whose input and output channel maps are known.

    `depthwise`: its output channels are its input channels (one filter per input channel, possibly
    with a channel multiplier), so both sides are one group.
    """

    node: onnx.NodeProto
    input: str
    output: str
    depthwise: bool


@dataclass(frozen=True)
class Parts:
    """The pruned model keeps the same number of channels in every row of `ids` (rows x channels)."""

    ids: np.ndarray
    node: str


@dataclass(frozen=True)
class HeadsLink:
    """Attention heads `heads` (one id each, on the scores) are the rows of `rows` (heads x head dim): a
    query/key or value map of `node`'s product."""

    heads: np.ndarray
    rows: np.ndarray
    node: str


@dataclass
class Propagation:
    """The outcome: maps per tensor, the union-find, frozen ids and their reasons, id origins."""

    maps: dict[str, ChannelMap]
    union: UnionFind
    frozen: dict[int, str]
    origin: dict[int, str]  # id -> weighted node that created it
    weighted: list[WeightedUse] = field(default_factory=list)
    parts: list[Parts] = field(default_factory=list)
    reductions: list[Reduction] = field(default_factory=list)
    kinds: dict[int, str] = field(default_factory=dict)  # id -> what the channel is (`Group.kind`)
    pinned: list[Pinned] = field(default_factory=list)
    channel_targets: list[str] = field(default_factory=list)
    heads: list[HeadsLink] = field(default_factory=list)


def propagate(view: GraphView) -> Propagation:
    """Walk the graph in order and assign, pass on, and couple channel ids."""
    from mdp_trt.graph.rules import RULES  # the rules import this module's Walker
    from mdp_trt.graph.shape_reads import freeze_unsafe_shape_reads

    walker = Walker(view, RULES)
    for node in view.nodes:
        walker.visit(node)
    freeze_unsafe_shape_reads(walker)
    for name in view.graph_outputs:  # the interface fixes these whatever else would have frozen them
        for i in walker.maps[name].flat.tolist() if name in walker.maps else []:
            walker.frozen[i] = "graph output"
    return Propagation(walker.maps, walker.union, walker.frozen, walker.origin, walker.weighted,
                       walker.parts, walker.reductions, walker.kinds, walker.pinned,
                       walker.channel_targets, walker.heads)


class Walker:
    """The state rules read and extend: maps, the union-find, frozen ids, parts and reductions."""

    def __init__(self, view: GraphView, rules: dict[str, Rule]) -> None:
        self.view = view
        self.rules = rules
        self.union = UnionFind()
        self.maps: dict[str, ChannelMap] = {}
        self.frozen: dict[int, str] = {}
        self.origin: dict[int, str] = {}
        self.weighted: list[WeightedUse] = []
        self.parts: list[Parts] = []
        self.reductions: list[Reduction] = []
        self.kinds: dict[int, str] = {}
        self.pinned: list[Pinned] = []
        self.channel_targets: list[str] = []
        self.heads: list[HeadsLink] = []
        self._at_batch_two: GraphView | None = None

    # --- ids -------------------------------------------------------------------------------------
    def fresh(self, count: int, origin: str | None = None, frozen: str | None = None) -> np.ndarray:
        ids = self.union.new(count)
        for i in ids.tolist():
            if origin is not None:
                self.origin[i] = origin
            if frozen is not None:
                self.frozen[i] = frozen
        return ids

    def tie(self, a: np.ndarray, b: np.ndarray) -> None:
        """Channels a[i] and b[i] are the same channel."""
        self.union.union(np.asarray(a).reshape(-1), np.asarray(b).reshape(-1))

    def keep_parts_equal(self, ids: np.ndarray, node: onnx.NodeProto) -> None:
        """Record that the pruned model must keep as many channels in every row of `ids`."""
        self.parts.append(Parts(np.asarray(ids).reshape(ids.shape[0], -1), node.name))

    def mark(self, ids: np.ndarray, kind: str) -> None:
        """Record what these channels are (a query/key or value head dim): their group's `kind`."""
        for i in np.asarray(ids).reshape(-1).tolist():
            self.kinds[i] = kind

    def link_heads(self, heads: np.ndarray, rows: np.ndarray, node: onnx.NodeProto) -> None:
        """Record that attention head `heads[i]` is row i of `rows` (see `HeadsLink`)."""
        self.heads.append(HeadsLink(np.asarray(heads).reshape(-1), np.asarray(rows), node.name))

    def reduces_channels(self, node: onnx.NodeProto, tensor: str) -> None:
        """Record that `node` reduces or normalises `tensor` over its channels."""
        self.reductions.append(Reduction(node.name, tensor))

    def freeze(self, cmap: ChannelMap | None, reason: str) -> None:
        if cmap is None:
            return
        for i in cmap.flat.tolist():
            self.frozen.setdefault(i, reason)

    def freeze_tensor(self, name: str, reason: str) -> None:
        self.freeze(self.maps.get(name), reason)

    # --- maps ------------------------------------------------------------------------------------
    def set(self, name: str, cmap: ChannelMap) -> None:
        if name:
            self.maps[name] = cmap

    def map(self, name: str, axis: int) -> ChannelMap | None:
        """The tensor's map; for a tensor nothing gave channels to, a frozen map on `axis`."""
        if name in self.maps:
            return self.maps[name]
        if not name or self.view.constants.is_static(name):
            return None
        size = self.dim(name, axis)
        if not isinstance(size, int):
            return None
        producer = self.view.producer.get(name)
        if producer is None:
            reason = f"graph input '{name}'"
        elif name in self.view.graph_outputs:
            reason = "graph output"
        else:
            reason = f"channels come from {producer.op_type} '{producer.name}', which is not analysed"
        cmap = ChannelMap.on(self.fresh(size, frozen=reason), axis)
        self.maps[name] = cmap
        return cmap

    def unsupported(self, node: onnx.NodeProto, why: str | None = None) -> None:
        """Freeze every traced input of `node` (its outputs get frozen maps when someone reads them)."""
        reason = f"{node.op_type} '{node.name}'" + (f": {why}" if why else " is not supported for pruning")
        for name in node.input:
            self.freeze_tensor(name, reason)

    def traced(self, node: onnx.NodeProto) -> tuple[ChannelMap, int] | None:
        """The first input's map and rank; None when it carries no channels, or (freezing them) when its
        rank is unknown."""
        cmap = self.maps.get(node.input[0]) if node.input else None
        if cmap is None:
            return None
        rank = self.rank(node.input[0])
        if rank is None:
            self.unsupported(node, "input rank unknown")
            return None
        return cmap, rank

    def passthrough(self, node: onnx.NodeProto, cmap: ChannelMap) -> None:
        self.set(node.output[0], cmap)

    # --- shapes and attributes -------------------------------------------------------------------
    def rank(self, name: str) -> int | None:
        return self.view.rank(name)

    def shape(self, name: str):
        return self.view.shape(name)

    def dim(self, name: str, axis: int) -> int | str | None:
        shape = self.view.shape(name)
        return shape[axis] if shape is not None and 0 <= axis < len(shape) else None

    def at_batch_two(self) -> GraphView:
        """The model's view with a symbolic batch at 2 (built once, when a rule first asks): what a value
        computed from shapes would be at another batch."""
        if self._at_batch_two is None:
            self._at_batch_two = GraphView(self.view.model, representative_sizes=True, representative_batch=2)
        return self._at_batch_two

    # --- dispatch --------------------------------------------------------------------------------
    def visit(self, node: onnx.NodeProto) -> None:
        for ref in self.view.subgraph_references(node):
            self.freeze_tensor(ref, f"read inside a subgraph of {node.op_type} '{node.name}'")
        if node.domain not in ("", "ai.onnx"):
            self.unsupported(node, f"custom-domain op '{node.domain}'")
            return
        if node.op_type in SHAPE_READERS or all(self.view.constants.is_static(o) for o in node.output if o):
            return  # shapes and constants carry no channels
        rule = self.rules.get(node.op_type)
        if rule is None:
            self.unsupported(node)
        else:
            rule(self, node)
