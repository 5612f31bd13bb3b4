"""`load_scores`: the importance file `build --importance` reads, and its errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest

from mdp_trt.errors import InputError
from mdp_trt.graph import analyze
from mdp_trt.importance import load_scores
from mdp_trt.zoo import build


@pytest.fixture(scope="module")
def toy():
    model = build("toy", input_size=16)
    return model, analyze(model)


def full_scores(structure) -> dict[str, np.ndarray]:
    return {g.id: np.arange(1.0, g.size + 1) for g in structure.prunable_groups}


def save(tmp_path, arrays) -> object:
    path = tmp_path / "scores.npz"
    np.savez(path, **arrays)
    return path


def test_group_weight_and_block_keys_load(toy, tmp_path):
    model, structure = toy
    weight = next(n.input[1] for n in model.graph.node if n.name == "block.conv1")
    arrays = full_scores(structure)
    del arrays["g2"]
    arrays[weight] = np.full(8, 2.0)  # block.conv1 produces g2
    arrays["b0"] = np.array([40.0])
    loaded = load_scores(save(tmp_path, arrays), model, structure)
    np.testing.assert_array_equal(loaded["g2"], np.full(8, 2.0))
    np.testing.assert_array_equal(loaded["g1"], np.arange(1.0, 9.0))
    np.testing.assert_array_equal(loaded["b0"], [40.0])


def test_a_block_costs_at_least_the_layer_scores_it_holds(toy, tmp_path):
    model, structure = toy
    weight = next(n.input[1] for n in model.graph.node if n.name == "block.conv1")
    arrays = {**full_scores(structure), weight: np.full(8, 2.0), "b0": np.array([7.0])}  # 7 < 8 x 2
    np.testing.assert_array_equal(load_scores(save(tmp_path, arrays), model, structure)["b0"], [16.0])


@pytest.mark.parametrize("change, message", [
    ({"b0": np.array([1.0, 2.0])}, "block 'b0' needs one score"),
    ({"nonsense": np.ones(3)}, "neither a group id, a block id nor a layer's weight name"),
    ({"g1": np.ones(3)}, "'g1' has 3 scores"),
    ({"g1": -np.ones(8)}, "finite and non-negative"),
    ({"g2": None}, "no scores for prunable group(s) g2"),
])
def test_bad_files_are_refused_with_the_reason(toy, tmp_path, change, message):
    model, structure = toy
    arrays = full_scores(structure)
    for key, value in change.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_scores(save(tmp_path, arrays), model, structure)
