"""One-off studies: each answered one question about the product's measurements (benchmarks/studies/README.md).

They sit beside the product, as AlgoPerf's scoring and timm's benchmark scripts do, and are not installed with it:
run them from a checkout (`python -m benchmarks.studies.NAME`).
"""
