"""Channel importance: magnitude from weights (Taylor scores from data live in mdp_trt.torch)."""

from mdp_trt.importance.magnitude import channel_scores

__all__ = ["channel_scores"]
