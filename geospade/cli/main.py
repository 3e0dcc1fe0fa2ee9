"""Entry point of the ``geospade`` command: parses, dispatches, turns errors into one line.

Each subcommand lives in ``geospade/cli/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int | None``; its heavy imports happen inside ``run`` so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from geospade import __version__
from geospade.errors import GeospadeError

# name -> (module under geospade.cli, one-line help). Order is the order in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo-data": ("demo_data", "write the built-in demo scene (land cover + paired imagery)"),
    "export-chips": ("export_chips", "tile land cover + imagery into ArcGIS Classified_Tiles chips"),
    "train": ("train", "train a SPADE generator on a chip folder"),
    "synthesize": ("synthesize", "generate one seamless georeferenced GeoTIFF from land cover"),
    "what-if": ("what_if", "synthesise only what a plan changes, blended into the real imagery"),
    "seam-score": ("seam_score", "measure how visible tile seams are in a synthesised raster"),
    "train-segmenter": ("train_segmenter", "train the land-cover segmenter that evaluate uses"),
    "evaluate": ("evaluate", "score a model: segmentation consistency, Frechet distance, colours"),
    "export-model": ("export_model", "package a trained model as an Esri .dlpk for ArcGIS Pro"),
    "info": ("info", "show a checkpoint's model card, a chip folder's or a raster's summary"),
    "demo": ("quickstart", "run the whole pipeline on the built-in demo scene (quickstart)"),
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except for options whose default is None or that are switches."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool):
            return action.help or ""
        return super()._get_help_string(action) or ""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="geospade",
        description="Synthetic aerial imagery from land-cover maps with SPADE GANs.",
    )
    parser.add_argument("--version", action="version", version=f"geospade {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log details and show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"geospade.cli.{module_name}")
        command = sub.add_parser(name, help=help_text, description=module.__doc__,
                                 formatter_class=_HelpFormatter)
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="log details and show the full traceback on errors")
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


# Destinations of the output options (-o/--output, OUT_DIR): their parents are created.
OUTPUT_DESTS = ("output", "out_dir", "run_dir")


def _note_new_folders(args: argparse.Namespace) -> None:
    """Say on stderr when an output's folder does not exist yet (the command creates it)."""
    for dest in OUTPUT_DESTS:
        value = getattr(args, dest, None)
        if value is None:
            continue
        parent = Path(value).expanduser().absolute().parent
        if not parent.exists():
            print(f"geospade {args.command}: note: folder {parent} does not exist; "
                  "creating it", file=sys.stderr)


def _warning_printer(command: str, fallback: Callable) -> Callable:
    """A ``warnings.showwarning`` that prints geospade's own warnings as one line
    ("geospade COMMAND: warning: ..."), without Python's source file and line."""
    package = Path(__file__).resolve().parents[1]

    def show(message, category, filename, lineno, file=None, line=None):
        ours = category.__module__.startswith("geospade") or \
            Path(filename).resolve().is_relative_to(package)
        if not ours:
            return fallback(message, category, filename, lineno, file, line)
        print(f"geospade {command}: warning: {message}", file=file or sys.stderr)
        return None
    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    if threading.current_thread() is threading.main_thread():
        # `kill` (SIGTERM, as batch schedulers send) cleans up like Ctrl-C: no partial outputs.
        signal.signal(signal.SIGTERM, _interrupt)
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    _note_new_folders(args)
    try:
        with warnings.catch_warnings():  # restores showwarning for library callers
            warnings.showwarning = _warning_printer(args.command, warnings.showwarning)
            return int(args._run(args) or 0)
    except GeospadeError as exc:
        if verbose:
            raise
        print(f"geospade {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"geospade {args.command}: interrupted; partial outputs were removed.",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
