"""What a person reads: the tables of runs and the plots (the one module that imports matplotlib)."""
