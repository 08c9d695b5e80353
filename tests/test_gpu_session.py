"""benchmarks/gpu_session.sh end to end on the CPU (--device cpu --quick): every step runs and writes its folder,
the command-buffer runs record their XLA flags, and a backend whose framework is missing is skipped with the
reason, as on a GPU machine that has only JAX. No GPU is needed; on one, the same script runs at full size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_gpu_session_runs_end_to_end_on_the_cpu(tmp_path, mnist_data_dir):
    # TensorFlow made unimportable in every process of the session, as on the GPU image: a sitecustomize that
    # blocks it, found through PYTHONPATH by each interpreter the script starts.
    blocker = tmp_path / "no-tensorflow"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['tensorflow'] = None\n", encoding="utf-8")
    out = tmp_path / "session"
    # A fresh shell's environment: without the XLA_FLAGS that an in-process test in this worker may have set.
    env = {**{key: value for key, value in os.environ.items() if key != "XLA_FLAGS"},
           "MNIST_BENCH_DATA": str(mnist_data_dir), "PYTHON": sys.executable,
           "GPU_SESSION_BACKENDS": "flax-fused,keras", "PYTHONPATH": str(blocker)}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh"), "--device", "cpu", "--quick",
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stderr + done.stdout)[-3000:]
    assert (out / "skipped.txt").read_text() == "keras: skipped, tensorflow not installed\n"
    assert "JAX rows: flax-fused; TensorFlow rows: -" in (out / "session.log").read_text()
    assert "(unavailable: ModuleNotFoundError" in (out / "info.txt").read_text()
    for precision in ("highest", "default"):
        verification = json.loads((out / f"verify-{precision}" / "verify.json").read_text())
        assert verification["backends"]["flax-fused"]["passed"], verification["backends"]["flax-fused"]["checks"]
    flags = {"off": "--xla_gpu_enable_command_buffer=", "default": None,
             "while-conditional": "--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL"}
    for folder in ("run-b32", "profile", *(f"command-buffers-{mode}" for mode in flags)):
        results = json.loads((out / folder / "results.json").read_text())
        assert [run["status"] for run in results["runs"]] == ["ok"], folder
        if folder.startswith("command-buffers-"):
            recorded = results["environment"]["env"].get("XLA_FLAGS", "").split()
            wanted = flags[folder.removeprefix("command-buffers-")]
            assert (recorded == [wanted]) if wanted else not recorded, recorded
    assert "flax-fused-seed0:" in (out / "profile-ops.txt").read_text()
    assert (out / "compare" / "summary.md").is_file() and (out / "command-buffers" / "summary.md").is_file()
    # The folder is never reused: a second session into it is refused before anything runs.
    again = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh"), "--device", "cpu", "--out", str(out)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and again.stderr.strip() == f"gpu_session.sh: {out} exists; choose another --out"
