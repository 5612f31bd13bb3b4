"""Channel importance: magnitude from weights, or scores from a file (Taylor scores come from mdp_trt.torch)."""

from mdp_trt.importance.from_file import load_scores
from mdp_trt.importance.magnitude import channel_scores

__all__ = ["channel_scores", "load_scores"]
