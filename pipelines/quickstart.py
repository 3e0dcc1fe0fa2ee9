#!/usr/bin/env python3
"""Quickstart: the whole geospade pipeline on the built-in demo scene.

    python pipelines/quickstart.py demo-run [--steps N] [--device cuda] [--overwrite]

Same as ``geospade demo``: demo scene -> chips -> training -> synthesis -> evaluation, with
``demo-run/quickstart.png`` (land cover | real | synthetic) and ``demo-run/report.md``.
"""

import sys

from geospade.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main(["demo", *sys.argv[1:]]))
