"""The command line answers before it imports torch: ``--help``, ``--version`` and argument errors parse first and
import nothing heavy (``import torch`` alone takes ~2 s here, diffusers ~4 s); the names it offers come from the
torch-free sampler registry and options (``scorekit.samplers.registry``, ``scorekit.samplers.options``)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from scorekit.cli import SUBCOMMANDS, build_parser

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
PROBE = """
import json, sys
from scorekit.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit_:
    code = exit_.code
heavy = sorted(m for m in ("torch", "diffusers", "accelerate", "scorekit.pipelines") if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}), file=sys.__stderr__)
"""


def run_cli(*argv: str) -> tuple[int, list[str], str]:
    """Run ``scorekit ARGV`` in a fresh interpreter; returns its exit code, the heavy modules it imported, stdout."""
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], env=ENV, capture_output=True, text=True,
                            timeout=120)
    report = json.loads(result.stderr.strip().splitlines()[-1])
    return report["code"], report["heavy"], result.stdout + result.stderr


@pytest.mark.parametrize("argv, code", [
    (["--help"], 0),
    (["--version"], 0),
    (["sample", "--help"], 0),
    (["likelihood", "--help"], 0),
    (["sample", "--sampler", "nope", "--model", "m"], 2),  # argparse: invalid choice
    (["sample", "--steps", "0", "--model", "m"], 2),  # scorekit's own count check, before any import
    (["inpaint", "--model", "m", "--image", "missing.png", "--mask", "missing.png"], 2),
    (["restore", "--help"], 0),
    (["restore", "--task", "superres", "--model", "m", "--image", "missing.png"], 2),
    (["restore", "--task", "deblur", "--model", "m", "--image", "x.png", "--method", "heun"], 2),
    (["restore", "--task", "deblur", "--model", "m", "--image", "x.png", "--num-particles", "0"], 2),
    (["nope"], 2),
])
def test_help_and_argument_errors_import_neither_torch_nor_diffusers(argv, code):
    got, heavy, output = run_cli(*argv)
    assert got == code, output[-2000:]
    assert heavy == [], f"scorekit {' '.join(argv)} imported {heavy}"


def test_argument_errors_name_the_flag():
    _, _, output = run_cli("sample", "--steps", "0", "--model", "m")
    assert "--steps must be an integer >= 1, got 0" in output
    _, _, output = run_cli("sample", "--sampler", "nope", "--model", "m")
    assert "invalid choice: 'nope'" in output


def test_top_level_help_lists_every_subcommand_with_its_own_help_line(capsys):
    with pytest.raises(SystemExit):
        build_parser(["--help"]).parse_args(["--help"])
    listing = capsys.readouterr().out
    full = build_parser()  # every subcommand module registered: their own help lines
    subparsers = next(a for a in full._actions if a.dest == "command")
    own = {action.dest: action.help for action in subparsers._choices_actions}
    for name, (_, help_line, _) in SUBCOMMANDS.items():
        assert name in listing
        assert own[name] == help_line, f"SUBCOMMANDS[{name!r}] differs from its module's help line"


def test_import_scorekit_is_light_and_its_names_still_resolve():
    code = ("import sys, scorekit; light = 'torch' not in sys.modules; "
            "from scorekit import VPSDE, sample, ScoreSDEPipeline; import scorekit.sde; "
            "print(light, scorekit.VPSDE is VPSDE, callable(sample), scorekit.sde.VPSDE is VPSDE)")
    result = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=300)
    assert result.stdout.split() == ["True"] * 4, result.stderr[-2000:]


@pytest.mark.parametrize("command", ["restore", "inpaint", "colorize", "sample"])
def test_help_states_every_default(command):
    """A flag with a default says it in --help (argparse's own, or the help text's "default"); a default of 0
    (--seed) too, which DefaultsOnceFormatter once took for False."""
    parser = build_parser([command])
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    text = sub.format_help()
    assert "random seed of the torch.Generator (default: 0)" in text
    formatter = sub._get_formatter()
    for action in sub._actions:
        if action.option_strings and action.nargs != 0 and action.default not in (None, argparse.SUPPRESS):
            assert "default" in formatter._get_help_string(action).lower(), action.option_strings
    if command != "sample":  # the particle samplers' own defaults (no scheduler sets them); the preset's noise
        flat = " ".join(text.split())
        assert "default 16 [tds, mcgdiff]" in flat and "default 0.5 [tds, mcgdiff]" in flat
        assert ("deblur 0.02" in flat) == (command == "restore")
