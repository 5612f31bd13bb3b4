"""`mdp-trt analyze`: show what can be pruned in a model."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from mdp_trt.cli.app import app, console
from mdp_trt.graph import analyze, load_model


@app.command("analyze")
def analyze_command(
    model: Path = typer.Argument(..., help="The ONNX model to analyse."),
    as_json: bool = typer.Option(False, "--json", help="Print groups, layers and blocks as JSON on stdout."),
) -> None:
    """Find channel groups (channels pruned together), weighted layers and removable residual blocks.

    Group and block ids are stable for a given model file; plans for `mdp-trt prune` refer to them. A
    group shown as "128 (8 x 16)" is read by a grouped convolution, a GroupNorm or attention heads: a
    plan keeps as many channels in each of its 8 parts of 16. A group's kind says what its channels are:
    heads (an attention's heads, one channel per head: removing head i removes part i of the attention's
    qk_dim and v_dim groups too), qk_dim (attention's per-head query/key width, one part per head), v_dim
    (per-head value width), embedding (a transformer's residual stream), mlp_hidden (a transformer MLP's
    hidden width), or channels.
    """
    structure = analyze(load_model(model))
    if as_json:
        typer.echo(json.dumps(structure.to_json(), indent=1))
        return
    groups = Table(title=f"Channel groups of {model.name}", title_justify="left")
    for column in ("id", "size", "kind", "prunable", "producers", "reason"):
        groups.add_column(column, overflow="fold")
    heads_of = {t.heads: t.members for t in structure.heads}
    for g in structure.groups:
        more = len(g.producers) - 3
        producers = ", ".join(g.producers[:3]) + (f" (+{more})" if more > 0 else "")
        if g.id in heads_of:
            producers = "heads of " + ", ".join(heads_of[g.id])
        size = f"{g.size} ({g.parts} x {g.part_size})" if g.parts > 1 else str(g.size)
        groups.add_row(g.id, size, g.kind, "yes" if g.prunable else "[red]no[/]", producers, g.reason or "")
    console.print(groups)
    blocks = Table(title="Removable blocks (y = x + F(x))", title_justify="left")
    for column in ("id", "residual add", "stream group", "branch nodes", "inside"):
        blocks.add_column(column)
    for b in structure.blocks:
        blocks.add_row(b.id, b.add, b.group or "-", str(len(b.nodes)), b.parent or "")
    console.print(blocks)
    cores = (len(structure.layers) - len(structure.weighted_layers)) // 2
    layers = Table(title="Layers (weighted ops" + (", and each attention's two products timed as layers)"
                                                   if cores else ")"), title_justify="left")
    for column in ("name", "op", "in group", "out group", "channels in -> out", "block", "fused epilogue"):
        layers.add_column(column, overflow="fold")
    for la in structure.layers:
        layers.add_row(la.name, la.op + (" (dw)" if la.depthwise else ""), la.in_group or "(concat)",
                       la.out_group or "(concat)", f"{la.in_channels} -> {la.out_channels}", la.block or "",
                       "+".join(e.op for e in la.epilogue))
    console.print(layers)
    prunable = structure.prunable_groups
    console.print(f"{len(structure.groups)} groups ({len(prunable)} prunable, "
                  f"{sum(g.size for g in prunable)} prunable channels), {len(structure.layers)} layers"
                  + (f" ({cores} attentions, whole heads removable in "
                     f"{sum(structure.group(t.heads).prunable for t in structure.heads)})" if cores else "")
                  + f", {len(structure.blocks)} removable blocks")
