"""Experiments built from training runs: the reference pipeline, the papers' protocols, sweeps over datasets x
seeds x methods and their tables, the robustness study, and the demo on the embedded world."""
