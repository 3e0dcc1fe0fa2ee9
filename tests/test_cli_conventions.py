"""Conventions every subcommand follows: output spelling, quiet flags, fast --help, log bars."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from geospade.cli import main as cli_main
from geospade.progress import progress_bar

# A minimal valid command line (before the flag under test) for each subcommand.
MINIMAL = {
    "demo-data": ["out"],
    "export-chips": ["lc.tif", "--imagery", "img.tif", "-o", "chips"],
    "train": ["chips", "-o", "run"],
    "synthesize": ["lc.tif", "--checkpoint", "run", "-o", "out.tif"],
    "seam-score": ["out.tif", "--tile-size", "64"],
    "train-segmenter": ["chips", "-o", "seg.pt"],
    "evaluate": ["--checkpoint", "run", "--chips", "chips", "--segmenter", "seg.pt",
                 "-o", "report"],
    "export-model": ["run", "-o", "m.dlpk"],
    "demo": ["out"],
    "info": ["model.pt"],
    "what-if": ["lc.tif", "--imagery", "img.tif", "--changes", "plan.gpkg", "--checkpoint",
                "run", "-o", "out.tif"],
}
WITH_OUTPUT = ["export-chips", "train", "synthesize", "train-segmenter", "evaluate",
               "export-model", "what-if"]


def test_minimal_command_lines_cover_every_subcommand():
    assert set(MINIMAL) == set(cli_main.COMMANDS)


@pytest.mark.parametrize("command", sorted(MINIMAL))
@pytest.mark.parametrize("flag", ["-q", "--quiet", "--no-progress"])
def test_every_command_takes_the_quiet_flags(command, flag):
    parser = cli_main.build_parser()
    assert parser.parse_args([command, *MINIMAL[command]]).progress is True
    assert parser.parse_args([command, *MINIMAL[command], flag]).progress is False


@pytest.mark.parametrize("command", WITH_OUTPUT)
@pytest.mark.parametrize("flag", ["-o", "--output", "--out"])
def test_every_output_option_has_the_same_spellings(command, flag):
    parser = cli_main.build_parser()
    argv = [command, *MINIMAL[command]]
    at = argv.index("-o")
    argv[at], argv[at + 1] = flag, "elsewhere"
    args = parser.parse_args(argv)
    values = {str(v) for v in vars(args).values() if not callable(v)}
    assert "elsewhere" in values


def test_help_does_not_import_torch_and_is_fast():
    code = ("import sys, time; t = time.perf_counter()\n"
            "from geospade.cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "for name in ('torch', 'rasterio'):\n"
            "    assert name not in sys.modules, name + ' imported by --help'\n"
            "print(time.perf_counter() - t, file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    seconds = float(result.stderr.strip().splitlines()[-1])
    assert seconds < 2.0  # torch alone takes longer than this to import on a loaded machine


@pytest.mark.parametrize("command", ["train", "synthesize", "export-chips"])
def test_subcommand_help_does_not_import_torch(command):
    code = ("import sys\nfrom geospade.cli.main import main\n"
            f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_progress_in_a_log_file_is_one_line_per_update():
    log = io.StringIO()  # not a terminal
    bar = progress_bar(True, total=3, desc="work", unit="tile", file=log, mininterval=0)
    for _ in range(3):
        bar.update(1)
    bar.close()
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0].startswith("work:   0%") and "3/3" in lines[-1]
    assert len(lines) == len(set(lines)) == 4  # 0, 1, 2, 3 of 3: no repeated final line


def test_progress_false_writes_nothing():
    log = io.StringIO()
    bar = progress_bar(False, total=3, file=log)
    bar.update(3)
    bar.close()
    assert log.getvalue() == ""


def test_geospade_warnings_are_one_line(monkeypatch, capsys):
    import warnings

    from geospade.synthesis.synthesize import ResolutionWarning

    def warn(args):
        warnings.warn("lc.tif: pixel size 2 x 2 differs from the training resolution 1 x 1",
                      ResolutionWarning, stacklevel=2)
        return 0
    real_build = cli_main.build_parser

    def build():
        parser = real_build()
        parser.set_defaults(_run=warn, command="synthesize")
        return parser
    monkeypatch.setattr(cli_main, "build_parser", build)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert cli_main.main([]) == 0
    err = capsys.readouterr().err
    assert err == ("geospade synthesize: warning: lc.tif: pixel size 2 x 2 differs from the "
                   "training resolution 1 x 1\n")


def test_missing_output_folder_is_announced(tmp_path, capsys):
    target = tmp_path / "missing" / "deeper" / "out.tif"
    code = cli_main.main(["synthesize", str(tmp_path / "no_lc.tif"), "--checkpoint",
                          str(tmp_path / "no.pt"), "-o", str(target)])
    err = capsys.readouterr().err
    assert code != 0  # the inputs do not exist; the note still comes first
    assert err.splitlines()[0] == (f"geospade synthesize: note: folder {target.parent} does "
                                   "not exist; creating it")


def test_log_lines_skip_the_closing_redraw_whatever_its_bar_width():
    from geospade.progress import LineFile

    log = io.StringIO()
    lines = LineFile(log)
    lines.write("\rwork: 100%|######| 3/3 [00:00<00:00, 8768.58tile/s]")
    lines.write("\rwork: 100%|#######| 3/3 [00:00<00:00, 13802.24tile/s]")  # wider bar
    assert log.getvalue().count("\n") == 1
