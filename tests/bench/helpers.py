"""Helpers of the bench tests: the `bench` parser, as the CLI builds it."""
import argparse

from harness.bench.main import add_bench_arguments


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    return parser.parse_args(list(argv))
