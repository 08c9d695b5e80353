"""The instruments the harness and the report measure with: the machine's limits (roofline), the environment and
the stack it ran on, and the statistics every ratio is printed with."""
