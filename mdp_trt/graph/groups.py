"""From propagated channel ids to channel groups.

Two channels belong to the same class when propagation tied them (union-find root). Classes that live
in exactly the same set of tensors are pruned with the same rules, so they form one group; a group's
channel order is their order in the group's first tensor.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from mdp_trt.graph.channels import Propagation
from mdp_trt.graph.structure import Group, TensorChannels


@dataclass(frozen=True)
class GroupIndex:
    groups: tuple[Group, ...]
    tensors: dict[str, TensorChannels]


def build_groups(prop: Propagation, node_order: dict[str, int], weighted_names: set[str]) -> GroupIndex:
    roots = prop.union.roots()
    tensor_roots = {name: roots[cmap.ids] for name, cmap in prop.maps.items()}

    first_seen: dict[int, tuple[int, int]] = {}
    class_tensors: dict[int, list[str]] = defaultdict(list)
    for t_index, (name, rs) in enumerate(tensor_roots.items()):
        for position, root in enumerate(rs.tolist()):
            first_seen.setdefault(root, (t_index, position))
            seen = class_tensors[root]
            if not seen or seen[-1] != name:
                seen.append(name)

    frozen_reason: dict[int, str] = {}
    for item, reason in prop.frozen.items():
        frozen_reason.setdefault(int(roots[item]), reason)

    by_signature: dict[tuple[str, ...], list[int]] = {}
    for root in sorted(first_seen, key=first_seen.__getitem__):
        by_signature.setdefault(tuple(class_tensors[root]), []).append(root)

    producers: dict[int, set[str]] = defaultdict(set)
    for item, node in prop.origin.items():
        producers[int(roots[item])].add(node)
    consumers: dict[int, set[str]] = defaultdict(set)
    for use in prop.weighted:
        for root in set(tensor_roots[use.input].tolist()):
            consumers[root].add(use.node.name)
    for use in prop.weighted:  # a depthwise conv both reads and writes its group
        if use.depthwise:
            for root in set(tensor_roots[use.output].tolist()):
                producers[root].add(use.node.name)

    def ordered(names: set[str]) -> tuple[str, ...]:
        return tuple(sorted(names, key=lambda n: node_order.get(n, 1 << 30)))

    groups: list[Group] = []
    class_position: dict[int, tuple[int, int]] = {}
    for g_index, (signature, members) in enumerate(by_signature.items()):
        reason = next((frozen_reason[r] for r in members if r in frozen_reason), None)
        group_producers = set().union(*(producers[r] for r in members)) & weighted_names
        group_consumers = set().union(*(consumers[r] for r in members)) & weighted_names
        if reason is None and not group_producers:
            reason = "no weighted op produces these channels"
        for c_index, root in enumerate(members):
            class_position[root] = (g_index, c_index)
        groups.append(Group(
            id=f"g{g_index}",
            size=len(members),
            prunable=reason is None,
            reason=reason,
            producers=ordered(group_producers),
            consumers=ordered(group_consumers),
            tensors=signature,
        ))

    tensors: dict[str, TensorChannels] = {}
    for name, rs in tensor_roots.items():
        cmap = prop.maps[name]
        positions = np.array([class_position[r] for r in rs.tolist()], dtype=np.int64).reshape(-1, 2)
        tensors[name] = TensorChannels(cmap.axis, cmap.repeat, positions[:, 0].copy(), positions[:, 1].copy())
    return GroupIndex(tuple(groups), tensors)
