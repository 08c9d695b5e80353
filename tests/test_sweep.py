"""`mnist-bench sweep`: the grid from flags or TOML, both executors on one small grid, a failed trial recorded
while the others go on, resume, `compare` over a sweep folder, and a real local Ray that leaves no process.

The grid asks for one more device than this machine has cores: that trial fails on its node (this machine)
with the harness' one-line error, deterministically, wherever the test runs; the other trains for real.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.measure.environment import usable_cores
from benchmarks.sweep import SWEEP_FILE, TRIALS_DIR, load_sweep, summary_rows
from common.config import ExperimentConfig
from common.job import Job

TOO_MANY = usable_cores() + 1
BATCH = 4 * TOO_MANY
# Two epochs (a steady-state one after the compiling one) of 20 steps; 20 % of 25 batches validate.
GRID = ["--backend", "flax", "--devices", f"1,{TOO_MANY}", "--batch-size", str(BATCH), "--epochs", "2",
        "--train-limit", str(25 * BATCH), "--test-limit", "200", "--quiet"]
OK_TRIAL = f"flax-b{BATCH}-d1-lr0.001-highest-s0"
FAILING_TRIAL = f"flax-b{BATCH}-d{TOO_MANY}-lr0.001-highest-s0"


def dry_run(capsys, *argv) -> list[str]:
    assert main(["sweep", "--rounds", "1", "--dry-run", *argv]) == 0
    return capsys.readouterr().out.split()


def test_grid_from_flags_and_from_toml_is_the_same(tmp_path, capsys):
    grid_file = tmp_path / "sweep.toml"
    grid_file.write_text(f'backends = ["flax"]\ndevices = [1, {TOO_MANY}]\nbatch_sizes = [{BATCH}]\n'
                         f'[settings]\nepochs = 2\ntrain_limit = {25 * BATCH}\n', encoding="utf-8")
    from_flags = dry_run(capsys, *GRID)
    assert from_flags == [OK_TRIAL, FAILING_TRIAL]
    assert dry_run(capsys, "--grid", str(grid_file)) == from_flags
    # A flag overrides the file's axis; the product grows accordingly.
    assert len(dry_run(capsys, "--grid", str(grid_file), "--seeds", "0-2", "--lr", "1e-3,3e-3")) == 12
    dry_run(capsys, *GRID, "--out", str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()  # a dry run writes nothing


def test_kernel_routes_are_an_axis_with_ids_that_name_them(tmp_path, capsys):
    # One trial per route; a backend's own route keeps the ids sweeps had before routes were an axis.
    routes = dry_run(capsys, "--backend", "flax", "--xla-flags=xla,--xla_cpu_multi_thread_eigen=false")
    assert routes[0] == "flax-b32-d1-lr0.001-highest-xla-defaults-s0"
    assert re.fullmatch(r"flax-b32-d1-lr0\.001-highest-xla-[0-9a-f]{8}-s0", routes[1])
    assert dry_run(capsys, "--backend", "flax") == ["flax-b32-d1-lr0.001-highest-s0"]
    grid_file = tmp_path / "routes.toml"
    grid_file.write_text('backends = ["flax"]\nxla_flags = ["", "--xla_cpu_multi_thread_eigen=false"]\n')
    assert dry_run(capsys, "--grid", str(grid_file)) == routes
    assert main(["sweep", "--dry-run", "--xla-flags=xla,,x"]) == 2
    assert "--xla-flags: 'xla,,x' has an empty route" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--devices", "3"], "trial keras batch 32 devices 3 lr 0.001 highest seed 0: invalid config: devices=3; "
                         "expected a divisor"),
    (["--backend", "tf-fused", "--devices", "1,2"], "trial tf-fused-b32-d2-lr0.001-highest-s0: backend 'tf-fused' "
                                                    "trains on one device only"),
    (["--lr", "fast"], "--lr: 'fast' is not a comma list of floats"),
    (["--precision", "highest,best"], "invalid config: precision='best'"),
    (["--grid", "missing.toml"], "--grid: cannot read missing.toml"),
    (["--trials-per-node", "0"], "--trials-per-node: 0; expected an integer >= 1"),
])
def test_bad_grids_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "sweep"
    assert main(["sweep", "--rounds", "1", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_a_ray_address_where_nothing_answers_is_refused_before_anything_is_written(tmp_path, capsys):
    with socket.socket() as probe:  # a port of this machine that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    out = tmp_path / "sweep"
    assert main(["sweep", "--rounds", "1", "--backend", "flax", "--executor", "ray", "--ray-address", address, "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"mnist-bench: error: --ray-address {address}: nothing answers there; start the "
                                       "cluster (`ray start --head`) or give the address of a running one\n")
    assert not out.exists()


def test_grid_file_with_an_unknown_key_is_refused(tmp_path, capsys):
    grid_file = tmp_path / "sweep.toml"
    grid_file.write_text('backends = ["flax"]\nbatch_size = [32]\n', encoding="utf-8")
    assert main(["sweep", "--rounds", "1", "--grid", str(grid_file), "--out", str(tmp_path / "out")]) == 2
    assert "unknown keys batch_size; axes: backends, batch_sizes" in capsys.readouterr().err


def test_ray_executor_without_ray_names_the_extra(tmp_path):
    from helpers import cli_without

    done = cli_without("ray", ["sweep", "--rounds", "1", "--executor", "ray", "--backend", "flax", "--out", str(tmp_path / "o")])
    assert done.returncode == 2
    assert done.stderr.strip() == ("mnist-bench: error: --executor ray needs Ray, which the `cluster` extra installs "
                                   "(docs/install.md); or use --executor local")
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory, mnist_data_dir):
    """The grid, trained by the local executor: (exit code, sweep folder)."""
    out = tmp_path_factory.mktemp("sweeps") / "local"
    return main(["sweep", "--rounds", "1", *GRID, "--data-dir", str(mnist_data_dir), "--out", str(out)]), out


def check_sweep(sweep_dir: Path, executor: str) -> dict:
    """What both executors must leave: the index, one ok and one failed trial, their folders, the report."""
    index = load_sweep(sweep_dir)
    assert index.executor == executor
    records = {record.id: record for record in index.trials}
    assert list(records) == [OK_TRIAL, FAILING_TRIAL]
    ok, failing = records[OK_TRIAL], records[FAILING_TRIAL]
    assert (ok.status, ok.error, ok.attempts) == ("ok", None, 1)
    assert failing.status == "failed" and failing.attempts == 1
    assert f"--devices {TOO_MANY}: this machine has {usable_cores()} usable CPU cores" in failing.error
    assert ok.node == failing.node == os.uname().nodename
    results = json.loads((sweep_dir / TRIALS_DIR / OK_TRIAL / "results.json").read_text())
    (run,) = results["runs"]
    assert run["status"] == "ok" and len(run["history"]) == 2 and run["timing"]["epoch_s_median"] > 0
    assert results["job"]["devices"] == 1 and results["job"]["config"]["batch_size"] == BATCH
    assert (sweep_dir / "summary.md").read_text().count(OK_TRIAL) == 1
    assert {path.name for path in (sweep_dir / "plots").iterdir()} >= {"sweep-throughput.png", "sweep-accuracy.png"}
    return records


def test_local_sweep_records_every_trial_and_goes_on_past_a_failure(local_sweep):
    code, sweep_dir = local_sweep
    assert code == 1  # one trial failed
    check_sweep(sweep_dir, "local")


def test_resume_runs_only_the_trials_that_did_not_finish(local_sweep, tmp_path):
    sweep_dir = tmp_path / "resumed"
    shutil.copytree(local_sweep[1], sweep_dir)
    ok_results = (sweep_dir / TRIALS_DIR / OK_TRIAL / "results.json").read_bytes()
    assert main(["sweep", "--resume", str(sweep_dir), "--quiet"]) == 1
    records = {record.id: record for record in load_sweep(sweep_dir).trials}
    assert records[OK_TRIAL].attempts == 1
    assert (sweep_dir / TRIALS_DIR / OK_TRIAL / "results.json").read_bytes() == ok_results
    assert records[FAILING_TRIAL].attempts == 2 and records[FAILING_TRIAL].status == "failed"


def test_show_prints_a_sweeps_table(local_sweep, capsys):
    assert main(["show", str(local_sweep[1])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["backend", "batch", "devices", "lr"] and len(lines) == 4
    assert "ok" in lines[2] and "failed" in lines[3]


def test_compare_accepts_a_sweep_folder(local_sweep, tmp_path, capsys):
    assert main(["compare", str(local_sweep[1]), "--out", str(tmp_path / "cmp")]) == 0
    table = capsys.readouterr().out
    rows = [line.split()[0] for line in table.splitlines() if line.startswith("flax")]
    assert rows and "every row ran on cpu" in table and (tmp_path / "cmp" / "summary.md").is_file()


def ray_processes() -> set[int]:
    """Pids of Ray's processes on this machine (its daemons and workers), from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(marker in command for marker in ("raylet", "gcs_server", "ray::", "ray/_private", "default_worker.py")):
            found.add(int(entry.name))
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of `pids` still running (zombies count as gone)."""
    still = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            still.add(pid)
    return still


def test_ray_executor_matches_the_local_one_and_leaves_no_process(local_sweep, tmp_path, mnist_data_dir):
    import ray

    assert not ray_processes(), "a Ray is already running on this machine"
    # As many CPUs as the failing trial asks for: Ray schedules it, and it fails on the node, as locally.
    # On the loopback address: a test's servers talk to this machine only.
    ray.init(num_cpus=TOO_MANY, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        started = ray_processes()
        assert started, "ray.init started no process"
        sweep_dir = tmp_path / "ray"
        assert main(["sweep", "--rounds", "1", *GRID, "--executor", "ray", "--data-dir", str(mnist_data_dir),
                     "--out", str(sweep_dir)]) == 1
        check_sweep(sweep_dir, "ray")
        local_rows, ray_rows = summary_rows(local_sweep[1]), summary_rows(sweep_dir)
        assert [list(row) for row in ray_rows] == [list(row) for row in local_rows]
        assert [(row["trial"], row["status"][:6]) for row in ray_rows] == [(r["trial"], r["status"][:6])
                                                                           for r in local_rows]
        assert main(["sweep", "--resume", str(sweep_dir), "--executor", "ray", "--quiet"]) == 1
        records = {record.id: record for record in load_sweep(sweep_dir).trials}
        assert (records[OK_TRIAL].attempts, records[FAILING_TRIAL].attempts) == (1, 2)
        started |= ray_processes()
        check_a_lost_task_is_recorded_as_failed(ray.get_runtime_context().gcs_address, tmp_path / "lost",
                                                mnist_data_dir)
        started |= ray_processes()
    finally:
        ray.shutdown()
    deadline = time.monotonic() + 120
    while alive(started) and time.monotonic() < deadline:
        time.sleep(0.1)  # polling for the evidence (the processes gone), bounded
    assert not alive(started), f"Ray processes left behind: {sorted(alive(started))}"
    assert not (Path(sweep_dir) / SWEEP_FILE).read_text().count('"pending"')


def processes_with(text: str) -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, command line)} of the processes whose command line contains `text`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if text in command:
            found[int(entry.name)] = (parent, command)
    return found


def check_a_lost_task_is_recorded_as_failed(address: str, sweep_dir: Path, mnist_data_dir: Path) -> None:
    """Kill the Ray worker running a trial, as a lost node would take it: the trial is recorded as failed, the
    sweep ends, and the trial's own processes stop (their parent died: PR_SET_PDEATHSIG)."""
    from helpers import wait_for_text

    argv = ["sweep", "--rounds", "1", "--backend", "flax", "--epochs", "100000", "--train-limit", "250", "--test-limit", "100",
            "--executor", "ray", "--ray-address", address, "--data-dir", str(mnist_data_dir), "--out", str(sweep_dir),
            "--quiet"]
    process = subprocess.Popen([sys.executable, "-c", f"import sys; from benchmarks.cli import main; "
                                f"sys.exit(main({argv!r}))"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        trial = {}
        while not trial and process.poll() is None:
            trial = processes_with("mnist-bench-trial-")  # the trial process, in the task's scratch folder
            time.sleep(0.05)
        assert trial, f"the sweep ended before its trial started: {process.stderr.read()[-2000:]}"
        (trial_pid, (ray_worker, command)), = trial.items()
        scratch = Path(command.split()[-1])
        wait_for_text(scratch / "logs" / "flax-seed0.log", "epoch 1/100000 seed 0:", process)
        os.kill(ray_worker, signal.SIGKILL)
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, stderr[-2000:]
    (record,) = load_sweep(sweep_dir).trials
    assert record.status == "failed" and record.error.startswith("Ray task failed on "), record.error
    deadline = time.monotonic() + 120
    while alive({trial_pid} | set(processes_with(str(scratch)))) and time.monotonic() < deadline:
        time.sleep(0.1)  # waiting for the evidence (the trial's processes gone), bounded
    assert not alive({trial_pid} | set(processes_with(str(scratch)))), "the lost task's trial kept running"


def test_table_labels_device_counts_and_shows_speed_vs_one_device():
    from benchmarks.report.tables import format_text_table, group_runs, table_rows
    from common.job import Job
    from common.results import Results, RunResult

    def results(devices: int, epoch_s: float) -> Results:
        job = Job(backends=("flax",), devices=devices)
        run = RunResult("flax", 0, "cpu", devices=devices, timing={"epoch_s_median": epoch_s})
        return Results(created="2026-11-25T00:00:00+00:00", environment={"hostname": "m"}, job=job, runs=[run])

    rows = table_rows(group_runs([results(1, 3.0), results(2, 2.0)]))
    assert [row["run"] for row in rows] == ["flax · cpu", "flax · cpu×2"]
    assert [row["speed vs 1 device"] for row in rows] == ["—", "1.50x (no CI: 1 round)"]
    assert "speed vs 1 device" in format_text_table(rows)
    # Without a one-device twin there is nothing to compare with, and no column.
    alone = table_rows(group_runs([results(2, 2.0)]))
    assert "speed vs 1 device" not in alone[0] and "speed vs 1 device" not in format_text_table(alone)


def test_ctrl_c_stops_the_running_trial_and_keeps_its_epochs(tmp_path, mnist_data_dir):
    from helpers import wait_for_text

    out = tmp_path / "sweep"
    first = "flax-b32-d1-lr0.001-highest-s0"
    # 100,000 epochs: the first trial can only end by Ctrl-C, which comes once its log shows an epoch done.
    argv = ["sweep", "--rounds", "1", "--backend", "flax", "--seeds", "0,1", "--epochs", "100000", "--train-limit", "250",
            "--test-limit", "100", "--data-dir", str(mnist_data_dir), "--out", str(out), "--quiet"]
    process = subprocess.Popen([sys.executable, "-c", f"import sys; from benchmarks.cli import main; "
                                f"sys.exit(main({argv!r}))"], start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_for_text(out / TRIALS_DIR / first / "logs" / "flax-seed0.log", "epoch 1/100000 seed 0:", process)
        os.killpg(process.pid, signal.SIGINT)  # the terminal's Ctrl-C: the sweep's process group
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, stderr[-2000:]
    assert f"mnist-bench sweep --resume {out}" in stderr
    records = {record.id: record for record in load_sweep(out).trials}
    assert [(r.status, r.attempts) for r in records.values()] == [("interrupted", 1), ("pending", 0)]
    (run,) = json.loads((out / TRIALS_DIR / first / "results.json").read_text())["runs"]
    assert run["status"] == "interrupted" and len(run["history"]) >= 1


def test_a_sigkilled_driver_leaves_no_trial_running_and_a_sweep_that_resumes(tmp_path, mnist_data_dir):
    from helpers import wait_for_text

    out = tmp_path / "sweep"
    first = "flax-b32-d1-lr0.001-highest-s0"
    # 100,000 epochs: the trial is still training when its driver is killed, however fast the machine is.
    argv = ["sweep", "--rounds", "1", "--backend", "flax", "--epochs", "100000", "--train-limit", "250", "--test-limit", "100",
            "--data-dir", str(mnist_data_dir), "--out", str(out), "--quiet"]
    process = subprocess.Popen([sys.executable, "-c", f"import sys; from benchmarks.cli import main; "
                                f"sys.exit(main({argv!r}))"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_text(out / TRIALS_DIR / first / "logs" / "flax-seed0.log", "epoch 1/100000 seed 0:", process)
        trial = set(processes_with(str(out / TRIALS_DIR / first)))
        assert trial, "no trial process found"
        process.kill()  # SIGKILL: no handler runs, nothing is saved by the driver
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    deadline = time.monotonic() + 120
    while alive(trial | set(processes_with(str(out)))) and time.monotonic() < deadline:
        time.sleep(0.1)  # waiting for the evidence (the trial's processes gone), bounded
    assert not alive(trial | set(processes_with(str(out)))), "a trial kept training after its driver was killed"
    (record,) = load_sweep(out).trials  # the index reads: it was only ever replaced whole
    assert (record.status, record.attempts) == ("pending", 1)
    # --resume takes the folder over (the dead driver's lock went with it) and runs the trial again; its
    # timeout ends this 100,000-epoch trial, and the sweep records it.
    assert main(["sweep", "--resume", str(out), "--trial-timeout", "5", "--quiet"]) == 1
    (record,) = load_sweep(out).trials
    assert (record.status, record.attempts) == ("failed", 2) and "timed out after 5 s" in record.error


def start_ray_head() -> tuple[subprocess.Popen, str]:
    """A Ray head of its own (tests/helpers/ray_head.py) that the test can kill; returns it and its address."""
    head = subprocess.Popen([sys.executable, str(Path(__file__).parent / "helpers" / "ray_head.py"), "2"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    address = head.stdout.readline().strip()
    assert address.startswith("127."), f"the Ray head did not start on the loopback address: {address!r}"
    return head, address


def kill_ray_head(head: subprocess.Popen, only: str = "") -> None:
    """SIGKILL the Ray processes the head started whose command line holds `only` (all of them by default:
    GCS, raylet, agents, workers; then the head itself). The trial's own processes are left to notice."""
    parents = {pid: parent for pid, (parent, _) in processes_with("").items()}

    def descends_from_head(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == head.pid:
                return True
        return False

    for pid in ray_processes():
        if descends_from_head(pid) and only in processes_with("").get(pid, (0, ""))[1]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if not only:
        head.kill()
        head.wait()


def start_ray_driver(argv: list[str]) -> subprocess.Popen:
    """`mnist-bench ARGV` in its own process; it uses the head's token, as any client of a Ray cluster must."""
    return subprocess.Popen([sys.executable, "-c", f"import sys; from benchmarks.cli import main; sys.exit(main({argv!r}))"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RAY_AUTH_MODE": "token"})


def wait_for_ray_trial(driver: subprocess.Popen) -> tuple[int, Path]:
    """Wait until the driver's trial (in a Ray task's scratch folder) has trained an epoch; its pid and folder."""
    from helpers import wait_for_text

    trial = {}
    while not trial and driver.poll() is None:
        trial = processes_with("mnist-bench-trial-")
        time.sleep(0.05)
    assert trial, f"the sweep ended before its trial started: {driver.stderr.read()[-2000:]}"
    (trial_pid, (_, command)), = trial.items()
    scratch = Path(command.split()[-1])
    wait_for_text(scratch / "logs" / "flax-seed0.log", "epoch 1/100000 seed 0:", driver)
    return trial_pid, scratch


def wait_until_gone(pids: set[int], scratch: Path, what: str) -> None:
    """The processes of a trial (and anything still running in its scratch folder) stop within 120 s."""
    deadline = time.monotonic() + 120
    while alive(pids | set(processes_with(str(scratch)))) and time.monotonic() < deadline:
        time.sleep(0.1)  # waiting for the evidence (the processes gone), bounded
    assert not alive(pids | set(processes_with(str(scratch)))), what


def test_a_sweep_outlives_its_ray_head_and_its_own_sigkill(tmp_path, mnist_data_dir):
    from benchmarks.sweep.ray_executor import HEAD_LOST_AFTER_S

    assert not ray_processes(), "a Ray is already running on this machine"
    out = tmp_path / "sweep"
    # 100,000 epochs: the trial is still training when its head (then its driver) is killed, however fast the
    # machine is; the last resume ends it with --trial-timeout.
    argv = ["sweep", "--rounds", "1", "--backend", "flax", "--epochs", "100000", "--train-limit", "250", "--test-limit", "100",
            "--executor", "ray", "--data-dir", str(mnist_data_dir), "--quiet"]
    first_head, first_address = start_ray_head()
    started = ray_processes()
    driver = first_head  # until the first driver starts
    try:
        driver = start_ray_driver([*argv, "--ray-address", first_address, "--out", str(out)])
        trial_pid, scratch = wait_for_ray_trial(driver)
        killed = time.monotonic()
        # The head's GCS dies, as when the head crashes or is cut off: what a driver on another machine sees.
        # (This driver shares the head's raylet, as no driver elsewhere would; Ray would end it with the raylet.)
        kill_ray_head(first_head, only="gcs_server")
        _, stderr = driver.communicate(timeout=HEAD_LOST_AFTER_S + 60)
        assert driver.returncode == 1, stderr[-2000:]
        assert time.monotonic() - killed < HEAD_LOST_AFTER_S + 30  # well before Ray's own 60 s give-up
        kill_ray_head(first_head)  # the rest of the head machine
        assert f"mnist-bench sweep --resume {out} --executor ray --ray-address HOST:PORT" in stderr.splitlines()[-1], stderr
        (record,) = load_sweep(out).trials
        assert (record.status, record.attempts) == ("failed", 1)
        assert record.error == f"the Ray head at {first_address} stopped answering while this trial ran"
        wait_until_gone({trial_pid}, scratch, "a trial kept training after its Ray head died")

        second_head, second_address = start_ray_head()
        started |= ray_processes()
        try:
            resume = ["sweep", "--resume", str(out), "--executor", "ray", "--ray-address", second_address, "--quiet"]
            driver = start_ray_driver(resume)
            trial_pid, scratch = wait_for_ray_trial(driver)
            started |= ray_processes()
            driver.kill()  # SIGKILL: no handler runs; Ray ends the dead driver's tasks, the trial with them
            driver.wait()
            wait_until_gone({trial_pid}, scratch, "a Ray trial kept training after its driver was SIGKILLed")
            (record,) = load_sweep(out).trials  # the index reads: it was only ever replaced whole
            assert (record.status, record.attempts) == ("pending", 2)
            # The new head finishes the grid: the trial runs there again, and its timeout ends it.
            driver = start_ray_driver([*resume, "--trial-timeout", "5"])
            _, stderr = driver.communicate(timeout=300)
            assert driver.returncode == 1, stderr[-2000:]
            (record,) = load_sweep(out).trials
            assert (record.status, record.attempts) == ("failed", 3) and "timed out after 5 s" in record.error
            assert record.node == socket.gethostname() and (out / "summary.md").is_file()
            started |= ray_processes()
        finally:
            second_head.stdin.close()  # the head shuts Ray down
            second_head.wait(timeout=120)
    finally:
        if first_head.poll() is None:
            kill_ray_head(first_head)
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    deadline = time.monotonic() + 120
    while alive(started) and time.monotonic() < deadline:
        time.sleep(0.1)  # polling for the evidence (the processes gone), bounded
    assert not alive(started), f"Ray processes left behind: {sorted(alive(started))}"


def test_trials_share_a_floor_only_when_everything_that_sets_it_agrees():
    from benchmarks.measure.roofline import floor_key

    base = Job(backends=("flax",), config=ExperimentConfig(epochs=1))
    assert floor_key(base) == floor_key(base.replace(backends=("keras",), seeds=(1, 2), rounds=5,
                                                     config=base.config.replace(epochs=7, train_limit=640)))
    for other in (base.replace(precision="default"), base.replace(devices=2), base.replace(device="gpu"),
                  base.replace(config=base.config.replace(batch_size=512)),
                  base.replace(config=base.config.replace(hidden_units=(64,))),
                  base.replace(config=ExperimentConfig(model="cnn"))):
        assert floor_key(other) != floor_key(base), other
