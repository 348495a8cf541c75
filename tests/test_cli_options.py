"""The CLI's option vocabularies are the library's: a name added to a registry is a name the CLI accepts."""

from __future__ import annotations

import subprocess
import sys

import click

from fmnist_edge import cli as cli_module
from fmnist_edge.benchmarks.backends import DEFAULT_BACKENDS
from fmnist_edge.cli import cli
from fmnist_edge.convert import FORMATS, PRECISIONS as CONVERT_PRECISIONS
from fmnist_edge.runtime import PRECISIONS
from fmnist_edge.runtime.preprocess import POLARITIES
from fmnist_edge.train.config import DEVICES, OPTIMIZER_DEFAULTS, PRECISIONS as TRAIN_PRECISIONS


def _choices(command: str, option: str) -> tuple[str, ...]:
    param = next(p for p in cli.commands[command].params if p.name == option)
    assert isinstance(param.type, click.Choice), f"{command} --{option} is not a choice"
    return tuple(param.type.choices)


def test_choice_options_list_what_the_library_accepts():
    assert _choices("train", "optimizer") == tuple(OPTIMIZER_DEFAULTS)
    assert _choices("train", "device") == DEVICES
    assert _choices("train", "precision") == TRAIN_PRECISIONS
    assert _choices("predict", "precision") == _choices("serve", "precision") == ("auto", *PRECISIONS)
    assert _choices("predict", "polarity") == POLARITIES


def test_comma_lists_parse_against_the_library_names():
    assert cli_module.FORMATS == FORMATS
    assert cli_module.OV_PRECISIONS == PRECISIONS == CONVERT_PRECISIONS
    assert cli_module.BENCH_BACKENDS == DEFAULT_BACKENDS


def test_loading_the_cli_loads_neither_openvino_nor_tensorflow():
    code = "import sys, fmnist_edge.cli; print(sorted({m.split('.')[0] for m in sys.modules} & {'openvino', 'tensorflow', 'keras'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
