"""Nothing lost when runs collide: folders claimed before work, unique default names, busy folders refused."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.cli import main
from common.atomic import FolderInUseError, claim_output_directory, release_claims
from common.results import load_results
from helpers import claim_racer

RACERS = 4
ROUNDS = 10
TINY_RUN = ["--epochs", "1", "--train-limit", "320", "--test-limit", "100", "--quiet"]


def racing(target, *args) -> list[str]:
    """Start RACERS processes that meet at one barrier, then run `target`; their reports."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter each: no forked JAX threads
    barrier, queue = context.Barrier(RACERS), context.Queue()
    extra = (context.Event(),) if target is claim_racer.claim_one_folder else ()
    processes = [context.Process(target=target, args=(barrier, *extra, *args, queue)) for _ in range(RACERS)]
    for process in processes:
        process.start()
    reports = [queue.get(timeout=120) for _ in processes]
    for event in extra:
        event.set()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    return reports


def test_racing_default_folders_never_collide(tmp_path):
    for round_ in range(ROUNDS):
        folders = racing(claim_racer.claim_new_folder, str(tmp_path / f"round{round_}"))
        assert len(set(folders)) == RACERS, folders  # one folder each, though all started in one second
        # Sortable by time: race-<UTC second>-<random>.
        assert all(re.fullmatch(r"race-\d{8}T\d{6}Z-[0-9a-f]{6}", Path(folder).name) for folder in folders), folders


def test_of_racers_on_one_folder_exactly_one_wins(tmp_path):
    for round_ in range(ROUNDS):
        reports = racing(claim_racer.claim_one_folder, str(tmp_path / f"out{round_}"))
        assert reports.count("won") == 1, reports
        losers = [report for report in reports if report != "won"]
        assert all("is in use by another mnist-bench process (pid " in report for report in losers), losers


def test_two_runs_started_together_keep_both_results(tmp_path, mnist_data_dir):
    """Two runs without --out in one folder each get their own; two with one --out: one trains, one stops."""
    def start(backend: str, *out: str) -> subprocess.Popen:
        argv = ["run", "--rounds", "1", "--timing-rounds", "0", "--no-floor", "--backend", backend, *TINY_RUN, "--data-dir", str(mnist_data_dir), *out]
        return subprocess.Popen([sys.executable, "-c", f"import sys; from benchmarks.cli import main; "
                                 f"sys.exit(main({argv!r}))"], cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    same = str(tmp_path / "same")
    processes = [start("flax"), start("flax-fused"), start("flax", "--out", same), start("flax-fused", "--out", same)]
    outcomes = [(process.wait(timeout=600), process.stderr.read()) for process in processes]
    assert [code for code, _ in outcomes[:2]] == [0, 0], outcomes
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2
    assert sorted(load_results(folder).job.backends[0] for folder in folders) == ["flax", "flax-fused"]
    codes = sorted(code for code, _ in outcomes[2:])
    assert codes == [0, 2], outcomes[2:]
    loser = next(err for code, err in outcomes[2:] if code == 2).strip().splitlines()
    assert len(loser) == 1 and ("is in use by another mnist-bench process" in loser[0]
                                or "already holds a run" in loser[0]), loser
    assert load_results(same).runs[0].status == "ok"


def test_resume_of_a_folder_a_live_process_writes_is_refused(tmp_path, mnist_data_dir, capsys):
    out = tmp_path / "run"
    assert main(["run", "--rounds", "1", "--timing-rounds", "0", "--no-floor", "--backend", "flax", *TINY_RUN, "--data-dir", str(mnist_data_dir), "--out", str(out)]) == 0
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from common.atomic import claim_output_directory; "
                               f"claim_output_directory({str(out)!r}); print('held', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        assert main(["run", "--resume", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"is in use by another mnist-bench process (pid {holder.pid} on " in err[0], err
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding the lock: the kernel drops it
        holder.wait()
    # A dead holder leaves nothing stuck: the folder can be claimed again (its run is complete: nothing to train).
    claim_output_directory(out)
    release_claims()
    assert main(["run", "--resume", str(out)]) == 0


def test_a_claim_is_released_at_the_end_of_a_command(tmp_path, mnist_data_dir):
    out = tmp_path / "verify"
    assert main(["verify", "--backend", "flax", "--steps", "2", "--data-dir", str(mnist_data_dir), "--out",
                 str(out), "--quiet"]) == 0
    check = subprocess.run([sys.executable, "-c", "from common.atomic import claim_output_directory; "
                            f"claim_output_directory({str(out)!r}); print('claimed')"], capture_output=True, text=True)
    assert check.stdout.strip() == "claimed", check.stderr[-2000:]
    with pytest.raises(FolderInUseError, match="in use"):
        holder = subprocess.Popen([sys.executable, "-c", "import sys; from common.atomic import claim_output_directory; "
                                   f"claim_output_directory({str(out)!r}); print('held', flush=True); sys.stdin.read()"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "held"
            claim_output_directory(out)
        finally:
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait()
