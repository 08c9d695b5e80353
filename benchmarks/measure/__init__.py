"""Measurements besides training: the machine's limits (roofline), equivalence (verify), the environment, the
step ablation."""
