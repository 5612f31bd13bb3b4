"""MatMul of two activations: attention's `q @ k^T` and `attn @ v`.

Patterns covered (after `graph.fused_parts` has written fused projections part by part):
* `q @ k^T` with q (.., H, N, D) and k^T (.., H, D, N) as every exporter writes them (timm, PyTorch's
  `scaled_dot_product_attention` in TorchScript and dynamo, separate q/k/v projections): the contracted
  axis carries the same channels on both sides (a query/key head dim), so they are tied; the per-head
  rows are heads. The product reduces over those channels, so the masked model computes it over the
  kept ones (`Structure.reductions`). The scores carry the heads only.
* `attn @ v` (or `v @ attn^T`, ultralytics' PSA): the output carries v's channels (a value head dim
  per head).

The heads (a batch axis of both products) get ids of their own on the scores: `q @ k^T` writes one id
per head on the scores' heads axis, linked to the rows of q's (heads x head dim) map, and `attn @ v`
links the same ids to the rows of v's map (`Walker.link_heads`). The scores carry them through the
scale, biases, masks and softmax, so a per-head constant (Swin's relative position bias, LeViT's
attention biases) is sliced with them; `graph.heads` turns them into a `heads` group that removes whole
heads. Every head kept keeps as many channels (`parts`).
Anything else (channels on one side of the contraction only, or on both sides' free axes) freezes.
"""

from __future__ import annotations

import onnx

from mdp_trt.graph.channelmap import ChannelMap
from mdp_trt.graph.channels import Walker

QK_DIM, V_DIM, HEADS = "qk_dim", "v_dim", "heads"


def product(w: Walker, node: onnx.NodeProto) -> None:
    a, b = node.input[0], node.input[1]
    ma, mb = w.maps.get(a), w.maps.get(b)
    if ma is None and mb is None:
        return
    ra, rb, r = w.rank(a), w.rank(b), w.rank(node.output[0])
    if ra is None or rb is None or r is None or ra < 2 or rb < 2:
        w.unsupported(node, "a product of tensors of unknown or vector rank")
        return
    roles_a = _roles(ma, ra, contracted=ra - 1, free=ra - 2, offset=r - ra)
    roles_b = _roles(mb, rb, contracted=rb - 2, free=rb - 1, offset=r - rb)
    if "contracted" in roles_a or "contracted" in roles_b:
        if roles_a != roles_b or "free" in roles_a or not _whole_rows(ma) or not _whole_rows(mb) \
                or ma.ids.shape != mb.ids.shape:
            w.unsupported(node, "contracts channels that the other side does not carry")
            return
        w.tie(ma.ids, mb.ids)
        w.mark(ma.ids, QK_DIM)
        w.reduces_channels(node, a)
        if not ma.single:  # (heads x head dim): the scores carry the heads
            heads = w.fresh(int(ma.ids.shape[0]))
            w.mark(heads, HEADS)
            w.link_heads(heads, ma.ids, node)
            w.passthrough(node, ChannelMap.on(heads, roles_a[0][1]))
        return
    if ma is not None and mb is not None:
        _values(w, node, ma, mb, roles_a, roles_b, r - ra, r - rb)
        return
    cmap, rank = (ma, ra) if ma is not None else (mb, rb)
    if "free" not in (roles_a if ma is not None else roles_b) or not _whole_rows(cmap):
        w.unsupported(node, "carries channels on the heads axis only")
        return
    w.mark(cmap.ids, V_DIM)
    w.passthrough(node, cmap.shifted(r - rank))


def _values(w: Walker, node: onnx.NodeProto, ma: ChannelMap, mb: ChannelMap, roles_a: tuple, roles_b: tuple,
            offset_a: int, offset_b: int) -> None:
    """`attn @ v` (or `v @ attn^T`) where the scores carry their heads: v's rows are those heads."""
    (scores, value, roles, offset) = (ma, mb, roles_b, offset_b) if mb.ids.ndim == 2 else (mb, ma, roles_a, offset_a)
    head_axis = scores.axes[0] + (offset_a if scores is ma else offset_b)
    if not scores.single or value.single or not _whole_rows(value) or "free" not in roles \
            or roles[0] != ("batch", head_axis) or value.ids.shape[0] != scores.ids.size:
        w.unsupported(node, "multiplies two tensors that both carry channels")
        return
    w.mark(value.ids, V_DIM)
    w.link_heads(scores.ids, value.ids, node)
    w.passthrough(node, value.shifted(offset))


def _roles(cmap: ChannelMap | None, rank: int, contracted: int, free: int, offset: int) -> tuple:
    """Per channel dimension of a factor: contracted, its own free axis, or a batch axis (in output axes)."""
    if cmap is None:
        return ()
    return tuple("contracted" if a == contracted else "free" if a == free else ("batch", a + offset)
                 for a in cmap.axes)


def _whole_rows(cmap: ChannelMap) -> bool:
    """One channel axis, or per-head rows the pruned model keeps whole, each with one feature per index."""
    return all(r == 1 for r in cmap.repeats) and (cmap.single or (cmap.rows_fixed and len(cmap.axes) == 2))

