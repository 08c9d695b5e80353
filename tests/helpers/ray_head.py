"""A Ray head in its own process, so that a test can kill it: prints its GCS address, then runs until its
stdin closes (and shuts Ray down) or it is killed (and its daemons with it, by the test).

Usage: python ray_head.py NUM_CPUS
"""

import sys

import ray

# On the loopback address (tests/conftest.py sets Ray's switch for it): a test's servers talk to this machine only.
ray.init(num_cpus=int(sys.argv[1]), include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
