"""`mnist-bench data`: locate (or download), verify and summarise MNIST."""

from __future__ import annotations

from benchmarks.commands.flags import DEFAULT_JOB, add_setting_flags
from common.errors import EXIT_OK
from common.job import Job


def cmd_data(args) -> int:
    """Locate (or download), verify and summarise MNIST."""
    import numpy as np

    from common.mnist import load_mnist

    data = load_mnist(args.data_dir)
    print(f"source:    {data.source} ({'canonical, sha256 verified' if data.canonical else 'not the canonical files'})")
    print(f"train:     {data.train_images.shape} images, label counts {np.bincount(data.train_labels).tolist()}")
    print(f"test:      {data.test_images.shape} images, label counts {np.bincount(data.test_labels).tolist()}")
    return EXIT_OK


def add_parser(commands, formatter) -> None:
    """Add this command and its flags to the CLI's subcommands."""
    data = commands.add_parser("data", help="find or download MNIST, verify it and print a summary",
                               formatter_class=formatter)
    add_setting_flags(data, Job, DEFAULT_JOB, only=("data_dir",))
    data.set_defaults(handler=cmd_data)
