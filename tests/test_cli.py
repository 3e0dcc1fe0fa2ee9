"""The command line frame: help, version, and how errors reach the user."""

from __future__ import annotations

import subprocess
import sys

import pytest

from geospade import __version__
from geospade.cli import main as cli_main
from geospade.errors import InputError


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in cli_main.COMMANDS:
        assert name in out


def test_a_missing_subcommand_module_is_an_error_not_a_missing_command(monkeypatch):
    monkeypatch.setitem(cli_main.COMMANDS, "no-such", ("no_such_module", "nothing"))
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        cli_main.build_parser()


def test_synthesize_has_no_style_image_option(capsys):
    # Models take their style from the noise seed; an option that could only fail is gone.
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["synthesize", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--seed" in out and "--style-image" not in out


def test_version(capsys):
    with pytest.raises(SystemExit):
        cli_main.main(["--version"])
    assert __version__ in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert cli_main.main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def _failing_parser(monkeypatch):
    """Make the first registered subcommand raise a geospade error."""
    def boom(args):
        raise InputError("value 7 is bad", path="in.tif", hint="Use 3.")
    real_build = cli_main.build_parser

    def build():
        parser = real_build()
        parser.set_defaults(_run=boom, command="demo-data")
        return parser
    monkeypatch.setattr(cli_main, "build_parser", build)


def test_error_is_one_line_with_exit_code(monkeypatch, capsys):
    _failing_parser(monkeypatch)
    code = cli_main.main([])
    err = capsys.readouterr().err.strip()
    assert code == InputError.exit_code != 0
    assert err.count("\n") == 0
    assert "in.tif: value 7 is bad. Use 3." in err


def test_verbose_shows_traceback(monkeypatch):
    _failing_parser(monkeypatch)
    with pytest.raises(InputError):
        cli_main.main(["--verbose"])


def test_python_dash_m_runs():
    result = subprocess.run([sys.executable, "-m", "geospade", "--version"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert __version__ in result.stdout
