"""`promptbox bench`: the seed configuration against exact and fast modes on real workloads.

By default: world scenes (a fixed seed, 640x480) with the committed synthetic-world weights; `--images DIR` for any
image set; `--random-weights` for the compute-only worst case. Each mode runs in a process of its own
(bench.worker), so its peak RSS is its own. Modules: options (command line), workloads (frames and weights),
modes (one timed run of each mode), worker (a mode's process), runner (spawn and sum up), table (the report).
"""

from __future__ import annotations

import argparse
import json
import sys

from promptbox.bench.options import BenchOptions, add_arguments, options_from_args, parse_size
from promptbox.bench.runner import WorkerError, run
from promptbox.bench.table import format_table

__all__ = ["BenchOptions", "add_arguments", "format_table", "main", "parse_size", "run", "run_from_args"]


def run_from_args(args: argparse.Namespace) -> int:
    from promptbox.weights import WeightsError

    try:
        result = run(options_from_args(args))
    except (WeightsError, ValueError, WorkerError) as error:
        print(f"promptbox bench: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="promptbox bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
