"""From propagated channel ids to channel groups.

Two channels belong to the same class when propagation tied them (union-find root). Classes that live
in exactly the same set of tensors are pruned with the same rules, so they form one group; a group's
channel order is their order in the group's first tensor.

Parts constraints (a grouped convolution, GroupNorm, a split of the channel axis: the same number of
channels kept in every row of an id array) become a group's `parts`: its classes are ordered part
by part. A constraint is kept only where it is one: rows that hold the same channels (a shuffle's
rows, tied by its transpose) are satisfied by any plan, and a constraint whose rows span several
groups, or repeat a channel, cannot be expressed as equal parts of one group and freezes them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from mdp_trt.graph.channels import Parts, Propagation
from mdp_trt.graph.structure import Group, TensorChannels


@dataclass(frozen=True)
class GroupIndex:
    groups: tuple[Group, ...]
    tensors: dict[str, TensorChannels]
    positions: dict[int, tuple[int, int]]  # union-find root -> (group index, channel index in the group)


def build_groups(prop: Propagation, node_order: dict[str, int], weighted_names: set[str]) -> GroupIndex:
    roots = prop.union.roots()
    tensor_roots = {name: roots[cmap.flat] for name, cmap in prop.maps.items()}

    first_seen: dict[int, tuple[int, int]] = {}
    class_tensors: dict[int, list[str]] = defaultdict(list)
    for t_index, (name, rs) in enumerate(tensor_roots.items()):
        for position, root in enumerate(rs.tolist()):
            first_seen.setdefault(root, (t_index, position))
            seen = class_tensors[root]
            if not seen or seen[-1] != name:
                seen.append(name)

    kinds = {int(roots[item]): kind for item, kind in prop.kinds.items()}
    frozen_reason: dict[int, str] = {}
    for item, reason in prop.frozen.items():
        frozen_reason.setdefault(int(roots[item]), reason)

    by_signature: dict[tuple[str, ...], list[int]] = {}
    for root in sorted(first_seen, key=first_seen.__getitem__):
        by_signature.setdefault(tuple(class_tensors[root]), []).append(root)
    signature_of = {root: sig for sig, members in by_signature.items() for root in members}
    cells, part_reasons = _partition(prop.parts, roots, signature_of, by_signature)

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
        reason = next((frozen_reason[r] for r in members if r in frozen_reason), None) or part_reasons.get(signature)
        group_producers = set().union(*(producers[r] for r in members)) & weighted_names
        group_consumers = set().union(*(consumers[r] for r in members)) & weighted_names
        if reason is None and not group_producers:
            reason = "no weighted op produces these channels"
        parts = 1
        if signature in cells:
            cell_of = cells[signature]
            members = sorted(members, key=lambda r: cell_of[r])  # stable: first-seen order inside a part
            parts = len(set(cell_of.values()))
        for c_index, root in enumerate(members):
            class_position[root] = (g_index, c_index)
        kind = next((kinds[r] for r in members if r in kinds), "channels")
        groups.append(Group(
            id=f"g{g_index}",
            size=len(members),
            prunable=reason is None,
            reason=reason,
            producers=ordered(group_producers),
            consumers=ordered(group_consumers),
            tensors=signature,
            parts=parts,
            kind=kind,
        ))

    tensors: dict[str, TensorChannels] = {}
    for name, rs in tensor_roots.items():
        cmap = prop.maps[name]
        positions = np.array([class_position[r] for r in rs.tolist()], dtype=np.int64).reshape(-1, 2)
        tensors[name] = TensorChannels(cmap.axes, cmap.repeats, tuple(int(d) for d in cmap.ids.shape),
                                       positions[:, 0].copy(), positions[:, 1].copy())
    return GroupIndex(tuple(groups), tensors, class_position)


def _partition(constraints: list[Parts], roots: np.ndarray, signature_of: dict[int, tuple[str, ...]],
               by_signature: dict[tuple[str, ...], list[int]]
               ) -> tuple[dict[tuple[str, ...], dict[int, int]], dict[tuple[str, ...], str]]:
    """Per group (signature): each class's cell (equal-count part), and reasons for groups it freezes."""
    keys: dict[tuple[str, ...], dict[int, tuple[int, ...]]] = {}
    reasons: dict[tuple[str, ...], str] = {}
    for constraint in constraints:
        rows = roots[constraint.ids]
        signatures = {signature_of[int(r)] for r in rows.reshape(-1).tolist()}
        row_sets = [frozenset(row.tolist()) for row in rows]
        if all(s == row_sets[0] for s in row_sets):
            continue  # every row holds the same channels: any plan keeps as many in each
        unique = len(set(rows.reshape(-1).tolist())) == rows.size
        if len(signatures) > 1 or not unique:
            why = ("spans several channel groups" if len(signatures) > 1 else "repeats a channel")
            for sig in signatures:
                reasons.setdefault(sig, f"'{constraint.node}' keeps equal parts of channels, but a part {why}")
            continue
        (signature,) = signatures
        keyed = keys.setdefault(signature, {r: () for r in by_signature[signature]})
        for row_index, row in enumerate(rows):
            for root in row.tolist():
                keyed[root] = (*keyed[root], row_index)
    cells: dict[tuple[str, ...], dict[int, int]] = {}
    for signature, keyed in keys.items():
        if signature in reasons:
            continue
        sizes = defaultdict(int)
        for key in keyed.values():
            sizes[key] += 1
        if len(set(sizes.values())) != 1:
            reasons[signature] = "the equal parts that several grouped ops ask of these channels do not nest"
            continue
        index = {key: i for i, key in enumerate(sorted(sizes))}
        cells[signature] = {root: index[key] for root, key in keyed.items()}
    return cells, reasons
