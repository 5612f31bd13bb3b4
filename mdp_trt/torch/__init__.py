"""The PyTorch path: Taylor importance, plans as trainable masks, and the whole flow in Python.

    masked, plan = mdp_trt.torch.prune(model, example, loader, loss_fn, fps=500)
    ...fine-tune `masked` with any optimizer (`recalibrate_batch_norm` before evaluating it)...
    onnx_model = mdp_trt.torch.export(masked, example)
    pruned = mdp_trt.prune.prune_model(onnx_model, mdp_trt.graph.analyze(onnx_model), plan)

Group and block ids are those of `export(model, example_inputs)` analysed by `mdp_trt.graph.analyze`.
Nothing outside this package imports torch (`pip install 'mdp-trt[torch]'`).
"""

from mdp_trt.torch.batchnorm import recalibrate_batch_norm
from mdp_trt.torch.export import export
from mdp_trt.torch.flow import PruningSetup, plan_for, prune, setup
from mdp_trt.torch.masks import apply_plan
from mdp_trt.torch.scores import save_importance, taylor_importance

__all__ = ["PruningSetup", "apply_plan", "export", "plan_for", "prune", "recalibrate_batch_norm", "save_importance",
           "setup", "taylor_importance"]
