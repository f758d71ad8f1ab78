"""`fnnet experiment`: run one of the book's experiments (`fnnet.experiments`), or list them."""

from __future__ import annotations


def add_parser(sub):
    """Register `experiment` on the subparsers `sub`; returns its parser, or None when
    fnnet.experiments cannot be imported."""
    try:
        from fnnet import experiments
    except ImportError:
        return None
    return experiments.add_parser(sub)


def run(args, parser) -> int:
    """Run the experiment that args name (its figures and results.json), or print the list."""
    from fnnet import experiments

    return experiments.run(args)
