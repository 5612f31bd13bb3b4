"""Channel rules, one module per op family; `RULES` maps an op type to the function that handles it.

Each module's docstring lists the exporter patterns it covers. An op without a rule freezes the
channels it reads (`Walker.unsupported`), naming itself in the reason.
"""

from mdp_trt.graph.rules import elementwise, layout, normalise, select, spatial, weighted

RULES = {
    **weighted.RULES,
    **elementwise.RULES,
    **layout.RULES,
    **select.RULES,
    **normalise.RULES,
    **spatial.RULES,
}

__all__ = ["RULES"]
