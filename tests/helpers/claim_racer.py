"""Racers for the folder-claim tests: processes that wait at one barrier, then claim at once."""

from __future__ import annotations


def claim_new_folder(barrier, root: str, queue) -> None:
    """Make a new default-named folder under `root` and claim it; report its name."""
    from common.atomic import claim_output_directory, new_output_directory

    barrier.wait()
    queue.put(str(claim_output_directory(new_output_directory("race-", root))))


def claim_one_folder(barrier, done, path: str, queue) -> None:
    """Claim `path`; report 'won' or the error; hold the claim until every racer has tried."""
    from common.atomic import FolderInUseError, claim_output_directory

    barrier.wait()
    try:
        claim_output_directory(path)
        queue.put("won")
    except FolderInUseError as error:
        queue.put(f"lost: {error}")
    done.wait()
