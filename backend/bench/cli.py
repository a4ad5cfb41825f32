"""``python -m backend bench {watertight,artist,texture} ...``: the benchmarks' command line."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One subcommand per benchmark, each defined by its own module's ``add_parser``."""
    from backend.bench import artist, texture, watertight

    sub = parser.add_subparsers(dest="bench", required=True)
    for module in (watertight, artist, texture):
        module.add_parser(sub)


def main(args: argparse.Namespace) -> int:
    from backend.bench import artist, texture, watertight

    return {"watertight": watertight, "artist": artist, "texture": texture}[args.bench].main(args)
