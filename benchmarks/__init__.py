"""mnist-bench's command line and what it runs: the rooms are listed in docs/contributing.md ("Where code goes")."""
