"""``python -m backend bench {watertight,artist,texture,budget} ...``: the benchmarks' command line."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One subcommand per benchmark, each defined by its own module's ``add_parser``."""
    from backend.bench import artist, budget, texture, watertight

    sub = parser.add_subparsers(dest="bench", required=True)
    for module in (watertight, artist, texture, budget):
        module.add_parser(sub)


def main(args: argparse.Namespace) -> int:
    from backend.bench import artist, budget, texture, watertight

    modules = {"watertight": watertight, "artist": artist, "texture": texture, "budget": budget}
    return modules[args.bench].main(args)
