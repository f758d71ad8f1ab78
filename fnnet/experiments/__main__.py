"""`python -m fnnet.experiments NAME [--out DIR] [--seed N] [--quick]`, the same as `fnnet experiment`."""

import argparse
import sys

from fnnet.experiments import add_parser, run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fnnet.experiments")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["experiment", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
