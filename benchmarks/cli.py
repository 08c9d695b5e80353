"""The `mnist-bench` command: parses arguments and calls library functions, nothing more."""

from __future__ import annotations

import argparse
import sys


def cmd_data(args) -> int:
    """Locate (or download), verify and summarise MNIST."""
    import numpy as np

    from common.mnist import load_mnist

    data = load_mnist(args.data_dir)
    print(f"source:    {data.source} ({'canonical, sha256 verified' if data.canonical else 'not the canonical files'})")
    print(f"train:     {data.train_images.shape} images, label counts {np.bincount(data.train_labels).tolist()}")
    print(f"test:      {data.test_images.shape} images, label counts {np.bincount(data.test_labels).tolist()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="mnist-bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data = commands.add_parser("data", help="find or download MNIST, verify it and print a summary",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data.add_argument("--data-dir", default=None,
                      help="folder with the MNIST files (default: $MNIST_BENCH_DATA, then the caches, then download)")
    data.set_defaults(handler=cmd_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mnist-bench` console script."""
    from common.config import ConfigError
    from common.mnist import MnistDataError

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (MnistDataError, ConfigError) as error:
        print(f"mnist-bench: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
