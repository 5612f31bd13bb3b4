"""Pruning surgery: plans, the pruned model, and the masked (exactness oracle) model."""

from mdp_trt.prune.masked import mask_model
from mdp_trt.prune.plan import PLAN_FORMAT, Plan
from mdp_trt.prune.surgery import SurgeryError, prune_model

__all__ = ["PLAN_FORMAT", "Plan", "SurgeryError", "mask_model", "prune_model"]
