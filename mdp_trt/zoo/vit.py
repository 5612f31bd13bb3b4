"""ViT/DeiT-tiny as timm writes it and PyTorch's TorchScript exporter exports it.

Conv patch embedding, `flatten(2).transpose(1, 2)`, a class token expanded to the batch and joined in front
of the patches, a learnt position embedding, pre-norm blocks (`x + attn(norm1(x))`, `x + mlp(norm2(x))`)
whose attention is timm's fused one (one qkv Linear, `reshape(B, N, 3, H, D).permute(2, 0, 3, 1, 4)`,
`unbind(0)` as Split and Squeeze, `q * scale @ k^T`, softmax, `@ v`), the MLP's GELU as the exporter writes
it (`x * 0.5 * (1 + erf(x / sqrt(2)))`), a final LayerNorm and the classifier on the class token.
"""

from __future__ import annotations

import math

import numpy as np

from mdp_trt.zoo.builder import GraphBuilder, make_divisible

PATCH = 16
LN_EPSILON = 1e-6  # timm's ViTs


def vit_tiny(b: GraphBuilder, x: str, *, num_classes: int, width: float, input_size: int) -> str:
    """DeiT-tiny: embedding 192 (3 heads of 64), 12 blocks, MLP 768, patches of 16; `width` scales the head
    width (so the embedding)."""
    heads, depth = 3, 12
    head_dim = make_divisible(64 * width)
    dim = heads * head_dim
    y = b.conv(x, "patch_embed.proj", 3, dim, PATCH, stride=PATCH, bias=True, gain=1.0, pad=0)
    y = _transpose(b, _reshape(b, y, [0, dim, -1], "patch_embed.flatten"), [0, 2, 1], "patch_embed.transpose")
    y = _with_class_token(b, y, dim)
    tokens = b.values[y].shape[1]
    y = b.add(y, _learnt(b, "pos_embed", b.normal((1, tokens, dim), 0.02)), "pos_embed.add")
    for i in range(depth):
        y = _block(b, y, f"blocks.{i}", dim, heads, head_dim, tokens, depth)
    y = _layer_norm(b, y, "norm", dim)
    y = b.node("Gather", [y, b.const("const.index_0", np.array(0, np.int64))], "class_token", b.values[y][:, 0],
               axis=1)
    return b.gemm(y, "head", dim, num_classes)


def _block(b: GraphBuilder, x: str, name: str, dim: int, heads: int, head_dim: int, tokens: int, depth: int) -> str:
    h = _layer_norm(b, x, f"{name}.norm1", dim)
    y = b.add(x, _attention(b, h, f"{name}.attn", dim, heads, head_dim, tokens, depth), f"{name}.add1")
    h = _layer_norm(b, y, f"{name}.norm2", dim)
    hidden = _gelu(b, _linear(b, h, f"{name}.mlp.fc1", dim, 4 * dim, gain=2.0), f"{name}.mlp.act")
    return b.add(y, _linear(b, hidden, f"{name}.mlp.fc2", 4 * dim, dim, gain=1.0 / depth), f"{name}.add2")


def _attention(b: GraphBuilder, x: str, name: str, dim: int, heads: int, head_dim: int, tokens: int,
               depth: int) -> str:
    qkv = _linear(b, x, f"{name}.qkv", dim, 3 * dim)
    qkv = _reshape(b, qkv, [0, tokens, 3, heads, head_dim], f"{name}.reshape")
    qkv = _transpose(b, qkv, [2, 0, 3, 1, 4], f"{name}.permute")
    parts = b.split(qkv, f"{name}.unbind", [1, 1, 1], axis=0)
    q, k, v = (b.node("Squeeze", [part, b.const("const.axes_0", np.array([0], np.int64))], f"{part}.squeeze",
                      b.values[part][0]) for part in parts)
    scale = np.array(head_dim ** -0.5, np.float32)
    b.values["const.attn_scale"] = scale  # read by the Mul below, like the parameters `_learnt` records
    scale = b.const("const.attn_scale", scale)
    q = b.mul(q, scale, f"{name}.q_scale")
    k_t = _transpose(b, k, [0, 1, 3, 2], f"{name}.k_transpose")
    scores = b.node("MatMul", [q, k_t], f"{name}.scores", b.values[q] @ b.values[k_t])
    value = np.exp(b.values[scores] - b.values[scores].max(axis=-1, keepdims=True))
    attn = b.node("Softmax", [scores], f"{name}.softmax", value / value.sum(axis=-1, keepdims=True), axis=-1)
    context = b.node("MatMul", [attn, v], f"{name}.context", b.values[attn] @ b.values[v])
    context = _reshape(b, _transpose(b, context, [0, 2, 1, 3], f"{name}.context_transpose"), [0, tokens, dim],
                       f"{name}.context_reshape")
    return _linear(b, context, f"{name}.proj", dim, dim, gain=1.0 / depth)


def _learnt(b: GraphBuilder, name: str, value: np.ndarray) -> str:
    """A parameter that ops other than the builder's layers read (so its value joins the probe values)."""
    b.values[name] = value
    return b.param(name, value)


def _linear(b: GraphBuilder, x: str, name: str, cin: int, cout: int, *, gain: float = 1.0) -> str:
    """A Linear on tokens as the exporter writes it: MatMul by the (in, out) weight, then Add of the bias."""
    weight = b.normal((cin, cout), math.sqrt(gain / cin))
    bias = b.bias(cout)
    product = b.node("MatMul", [x, b.param(f"{name}.weight", weight)], f"{name}.matmul", b.values[x] @ weight)
    return b.node("Add", [b.param(f"{name}.bias", bias), product], name, b.values[product] + bias)


def _layer_norm(b: GraphBuilder, x: str, name: str, dim: int) -> str:
    weight = (0.75 + 0.5 * b.rng.random(dim)).astype(np.float32)
    bias = b.normal((dim,), 0.1)
    value = b.values[x]
    normal = (value - value.mean(-1, keepdims=True)) / np.sqrt(value.var(-1, keepdims=True) + LN_EPSILON)
    inputs = [x, b.param(f"{name}.weight", weight), b.param(f"{name}.bias", bias)]
    return b.node("LayerNormalization", inputs, name, normal * weight + bias, axis=-1, epsilon=LN_EPSILON)


def _gelu(b: GraphBuilder, x: str, name: str) -> str:
    value = b.values[x]
    scaled = b.node("Div", [x, b.const("const.sqrt_2", np.array(math.sqrt(2), np.float32))], f"{name}.div",
                    value / math.sqrt(2))
    erf = b.node("Erf", [scaled], f"{name}.erf", np.vectorize(math.erf)(b.values[scaled]))
    shifted = b.node("Add", [erf, b.const("const.one", np.array(1.0, np.float32))], f"{name}.add",
                     b.values[erf] + 1)
    gated = b.mul(x, shifted, f"{name}.mul")
    return b.node("Mul", [gated, b.const("const.half", np.array(0.5, np.float32))], name, b.values[gated] * 0.5)


def _reshape(b: GraphBuilder, x: str, shape: list[int], name: str) -> str:
    value = b.values[x]
    target = [value.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    label = "_".join(str(s) for s in shape).replace("-", "m")
    return b.node("Reshape", [x, b.const(f"const.shape_{label}", np.array(shape, np.int64))], name,
                  value.reshape(target))


def _transpose(b: GraphBuilder, x: str, perm: list[int], name: str) -> str:
    return b.node("Transpose", [x], name, np.transpose(b.values[x], perm), perm=perm)


def _with_class_token(b: GraphBuilder, x: str, dim: int) -> str:
    """`cat([cls_token.expand(B, -1, -1), x], 1)`: the token expanded to the batch read from `Shape(x)`."""
    value = b.values[x]
    shape = b.node("Shape", [x], "cls_token.shape", np.array(value.shape, np.int64))
    batch = b.node("Gather", [shape, b.const("const.indices_0", np.array([0], np.int64))], "cls_token.batch",
                   np.array(value.shape[:1], np.int64))
    sizes = b.node("Concat", [batch, b.const("const.ones_2", np.array([1, 1], np.int64))], "cls_token.sizes",
                   np.array([value.shape[0], 1, 1], np.int64), axis=0)
    token = b.normal((1, 1, dim), 0.02)
    expanded = b.node("Expand", [b.param("cls_token", token), sizes], "cls_token.expand",
                      np.broadcast_to(token, (value.shape[0], 1, dim)))
    return b.node("Concat", [expanded, x], "cls_token.concat",
                  np.concatenate([b.values[expanded], value], axis=1), axis=1)
