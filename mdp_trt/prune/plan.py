"""The pruning plan (`mdp-plan/1`): kept channels per group and removed blocks.

```
{"format": "mdp-plan/1", "groups": {"g3": {"keep": [0, 5, 7]}}, "remove_blocks": ["b2"]}
```
Groups not named keep every channel. Extra keys (`predicted`, `solver`, ...) are carried through.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mdp_trt.errors import InputError
from mdp_trt.graph.structure import Structure
from mdp_trt.io import write_json_atomic

PLAN_FORMAT = "mdp-plan/1"


@dataclass(frozen=True)
class Plan:
    groups: dict[str, tuple[int, ...]] = field(default_factory=dict)
    remove_blocks: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    # --- (de)serialisation -----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "groups": {gid: {"keep": list(keep)} for gid, keep in self.groups.items()},
            "remove_blocks": list(self.remove_blocks),
            **self.extra,
        }

    @classmethod
    def from_json(cls, data: Any, label: str = "plan") -> Plan:
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise InputError(f"{label}: not an {PLAN_FORMAT} document (needs \"format\": \"{PLAN_FORMAT}\")")
        groups_raw = data.get("groups", {})
        if not isinstance(groups_raw, dict):
            raise InputError(f"{label}: \"groups\" must be an object of group id -> {{\"keep\": [...]}}")
        groups: dict[str, tuple[int, ...]] = {}
        for gid, entry in groups_raw.items():
            keep = entry.get("keep") if isinstance(entry, dict) else None
            if not isinstance(keep, list) or not all(isinstance(i, int) and not isinstance(i, bool)
                                                     for i in keep):
                raise InputError(f"{label}: group '{gid}' needs \"keep\": a list of channel indices")
            groups[str(gid)] = tuple(keep)
        blocks = data.get("remove_blocks", [])
        if not isinstance(blocks, list) or not all(isinstance(b, str) for b in blocks):
            raise InputError(f"{label}: \"remove_blocks\" must be a list of block ids")
        extra = {k: v for k, v in data.items() if k not in ("format", "groups", "remove_blocks")}
        return cls(groups, tuple(blocks), extra)

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path}: no such plan file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: not a JSON plan ({exc})") from None
        return cls.from_json(data, str(path))

    def save(self, path: str | Path) -> None:
        write_json_atomic(Path(path), self.to_json())

    # --- checks ----------------------------------------------------------------------------------
    def validate(self, structure: Structure) -> None:
        """Raise InputError for anything a surgeon could not carry out faithfully."""
        groups = {g.id: g for g in structure.groups}
        heads_of = {m: tie for tie in structure.heads for m in tie.members}
        for gid, keep in self.groups.items():
            group = groups.get(gid)
            if group is None:
                raise InputError(f"plan: unknown group '{gid}'")
            if not keep:
                raise InputError(f"plan: group '{gid}' keeps no channel (keep at least one)")
            if len(set(keep)) != len(keep):
                raise InputError(f"plan: group '{gid}' lists a channel twice")
            bad = [i for i in keep if not 0 <= i < group.size]
            if bad:
                raise InputError(
                    f"plan: group '{gid}' has {group.size} channels; index {bad[0]} is out of range")
            if not group.prunable and len(keep) != group.size:
                raise InputError(f"plan: group '{gid}' cannot be pruned ({group.reason})")
            if group.parts > 1 and gid not in heads_of:
                counts = np.bincount(np.asarray(keep) // group.part_size, minlength=group.parts)
                if len(set(counts.tolist())) != 1:
                    raise InputError(
                        f"plan: group '{gid}' has {group.parts} parts of {group.part_size} channels (a grouped "
                        f"convolution, a GroupNorm, attention heads) and must keep as many in each; the plan keeps "
                        f"{', '.join(str(c) for c in counts.tolist())}")
        for tie in structure.heads:
            self._validate_heads(groups, tie.heads, tie.members)
        known_blocks = {b.id for b in structure.blocks}
        for bid in self.remove_blocks:
            if bid not in known_blocks:
                raise InputError(f"plan: unknown block '{bid}'")
        # Refused rather than deduplicated, as a channel listed twice is: a plan that names a block twice
        # was not written by these tools, and counting it once would hide the mistake from its author.
        twice = sorted({b for b in self.remove_blocks if self.remove_blocks.count(b) > 1})
        if twice:
            raise InputError(f"plan: block '{twice[0]}' is listed twice in remove_blocks")

    def _validate_heads(self, groups: dict, heads_id: str, members: tuple[str, ...]) -> None:
        """Every head kept in `heads_id` keeps channels in each member (as many in each head); no other does."""
        heads = set(self.kept(heads_id, groups[heads_id].size))
        for gid in members:
            group = groups[gid]
            counts = np.bincount(np.asarray(self.kept(gid, group.size)) // group.part_size, minlength=group.parts)
            holding = {int(h) for h in np.flatnonzero(counts)}
            if holding != heads:
                missing, extra = sorted(heads - holding), sorted(holding - heads)
                raise InputError(
                    f"plan: group '{gid}' is the {group.kind} of the attention whose heads are group '{heads_id}', "
                    + (f"and keeps no channel in head {missing[0]}, which '{heads_id}' keeps" if missing else
                       f"and keeps channels in head {extra[0]}, which '{heads_id}' removes")
                    + f": a head is removed from '{heads_id}' and all its groups at once (keep {sorted(holding)} "
                    f"in '{heads_id}' to remove the others)")
            kept_counts = set(counts[sorted(heads)].tolist())
            if len(kept_counts) != 1:
                raise InputError(
                    f"plan: group '{gid}' has {group.parts} parts of {group.part_size} channels (attention heads) "
                    f"and must keep as many in each head it keeps; the plan keeps "
                    f"{', '.join(str(c) for c in counts.tolist())}")

    def kept(self, group_id: str, size: int) -> tuple[int, ...]:
        return tuple(sorted(self.groups[group_id])) if group_id in self.groups else tuple(range(size))
