"""mdp-trt: latency-aware structured pruning (MDP) for ONNX vision models.

The pipeline runs one way: ONNX -> Structure -> Importance + LatencyTables -> Problem -> Plan ->
pruned ONNX -> engine -> Report. Each stage is a plain function usable without the CLI.
"""

__version__ = "0.1.0"
