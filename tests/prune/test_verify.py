"""`verify_pruned`: a pruned model that does not load, run or equal the masked model is refused (exit 4)."""

from __future__ import annotations

import numpy as np
import pytest

import mdp_trt.prune.verify as verify_module
from mdp_trt.errors import VerificationError
from mdp_trt.graph import analyze
from mdp_trt.prune import prune_model
from mdp_trt.prune.ratio import ratio_plan
from mdp_trt.prune.verify import check_runs, verify_pruned
from mdp_trt.zoo import build
from tests.prune.broken import bad_bias, conv_name, perturbed


@pytest.fixture(scope="module")
def case():
    model = build("toy", input_size=16, batch=None)
    structure = analyze(model)
    plan = ratio_plan(model, structure, 0.5)
    return model, structure, plan, prune_model(model, structure, plan)


def test_a_correct_pruned_model_passes_and_is_compared(case):
    result = verify_pruned(*case)
    assert result.compared and result.max_difference < 1e-5
    assert "equals the masked model" in result.summary()


def test_a_model_ort_cannot_run_names_the_node(case):
    model, structure, plan, pruned = case
    with pytest.raises(VerificationError, match="bias must be a 1D tensor") as info:
        verify_pruned(model, structure, plan, bad_bias(pruned))
    message = str(info.value)
    assert info.value.exit_code == 4 and "\n" not in message
    assert f"Name:'{conv_name(pruned, 0)}'" in message and message.endswith("please report this model")


def test_a_mismatch_names_the_output_and_the_first_node_that_differs(case):
    model, structure, plan, pruned = case
    with pytest.raises(VerificationError) as info:
        verify_pruned(model, structure, plan, perturbed(pruned, 1))
    message = str(info.value)
    assert "output 'output' differs by up to" in message
    assert f"first differs at node '{conv_name(pruned, 1)}'" in message


def test_a_costly_model_is_only_loaded_and_run(case, monkeypatch):
    model, structure, plan, pruned = case
    monkeypatch.setattr(verify_module, "COMPARE_MAX_FLOPS", 0)
    result = verify_pruned(model, structure, plan, perturbed(pruned))  # would mismatch if compared
    assert not result.compared and "GFLOPs" in result.skipped
    with pytest.raises(VerificationError, match="masked model"):
        verify_pruned(model, structure, plan, perturbed(pruned), compare=True)


def test_nan_in_the_pruned_output_is_a_mismatch():
    problem, _ = verify_module._mismatch(np.array([1.0, np.nan], np.float32), np.array([1.0, 2.0], np.float32))
    assert "NaN" in problem
    problem, _ = verify_module._mismatch(np.zeros((1, 3), np.float32), np.zeros((1, 4), np.float32))
    assert "shape" in problem


def test_check_runs_labels_what_it_ran(case):
    with pytest.raises(VerificationError, match=r"^the masked model does not run"):
        check_runs(bad_bias(case[3]), label="the masked model")
