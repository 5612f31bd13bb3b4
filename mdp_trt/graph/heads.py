"""Whole attention heads: each attention's `heads` group and the groups whose parts are its heads.

`q @ k^T` gives its scores one id per head, and both products link those ids to the rows of the
(heads x head dim) maps of q and v (`rules/products.py`). Here each attention's head ids become a group
of kind `heads`, tied to its `qk_dim` and `v_dim` groups (`Structure.heads`): a plan that removes head
i removes part i of each of them, and slices head i out of every per-head tensor the scores meet (a
relative position bias, an attention bias table). It keeps every other head at the same widths.

The heads can be removed only where every piece of that holds: each member group must be prunable and
have its heads as its parts, in head order, and nothing the scores meet may freeze them. Otherwise the
heads group stays frozen with the reason, and the heads stay whole (the head widths are still pruned).
Heads folded into a dynamic batch (`nn.MultiheadAttention`'s `B * H`) are removed too: surgery writes
`B * h` where the exporter computes `B * H` (`prune.surgeon`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np

from mdp_trt.graph.channels import Propagation
from mdp_trt.graph.groups import GroupIndex
from mdp_trt.graph.structure import HeadsTie


def tie_heads(prop: Propagation, index: GroupIndex) -> tuple[GroupIndex, tuple[HeadsTie, ...]]:
    """The groups with each attention's heads group made prunable where it can be, and the ties."""
    roots = prop.union.roots()
    groups = list(index.groups)
    members: dict[int, list[int]] = defaultdict(list)  # heads group index -> member group indices
    reasons: dict[int, str] = {}
    for link in prop.heads:
        heads = [index.positions[int(r)] for r in roots[link.heads].tolist()]
        g_heads = heads[0][0]
        rows = np.array([[index.positions[int(r)] for r in row] for row in roots[link.rows].tolist()])
        g_member = int(rows[0, 0, 0])
        member = groups[g_member]
        if any(g != g_heads or c != i for i, (g, c) in enumerate(heads)):
            reasons.setdefault(g_heads, f"'{link.node}' reads heads of more than one attention")
        elif (rows[:, :, 0] != g_member).any() or member.parts != len(heads) \
                or (rows[:, :, 1] // member.part_size != np.arange(len(heads))[:, None]).any():
            reasons.setdefault(g_heads, f"the heads of '{link.node}' are not the parts of {member.id} in order")
        elif not member.prunable:
            reasons.setdefault(g_heads, f"their {member.kind} channels ({member.id}) cannot be pruned")
        if g_member not in members[g_heads]:
            members[g_heads].append(g_member)
    for item, why in prop.frozen.items():  # frozen by what the scores met (an op not understood, an output)
        g_heads = index.positions[int(roots[item])][0]
        if g_heads in members:
            reasons.setdefault(g_heads, why)
    ties = []
    for g_heads, held in members.items():
        reason = reasons.get(g_heads)
        groups[g_heads] = replace(groups[g_heads], prunable=reason is None, reason=reason, kind="heads")
        ties.append(HeadsTie(groups[g_heads].id, tuple(groups[m].id for m in held)))
    return replace(index, groups=tuple(groups)), tuple(ties)
