"""What a person reads, made from saved results: the tables of runs, verify's table, the per-op breakdown, and the
plots (`plots.py`, the one module that imports matplotlib)."""
