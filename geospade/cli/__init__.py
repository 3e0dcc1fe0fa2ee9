"""The ``geospade`` command line: one module per subcommand, each thin over the library.

Every subcommand spells its output option ``-o/--output`` (``--out`` is accepted too) and
takes ``-q/--quiet/--no-progress``; :func:`add_output` and :func:`add_quiet` add them.
"""

from __future__ import annotations

import argparse

OUTPUT_FLAGS = ("-o", "--output", "--out")
QUIET_FLAGS = ("-q", "--quiet", "--no-progress")


def add_output(parser: argparse.ArgumentParser, **kwargs) -> argparse.Action:
    """The output option, ``-o/--output`` (alias ``--out``); kwargs as for add_argument."""
    return parser.add_argument(*OUTPUT_FLAGS, **kwargs)


def add_quiet(parser: argparse.ArgumentParser) -> argparse.Action:
    """``-q/--quiet/--no-progress``: sets ``args.progress`` to False (no progress bars)."""
    return parser.add_argument(*QUIET_FLAGS, dest="progress", action="store_false",
                               help="no progress bars")
