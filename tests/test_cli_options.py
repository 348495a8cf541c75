"""The CLI's option vocabularies are the library's: a name added to a registry is a name the CLI accepts."""

from __future__ import annotations

import subprocess
import sys

import click
import numpy as np
import pytest

from fmnist_edge import data
from fmnist_edge.cli import cli
from fmnist_edge.convert.pipeline import parse_list
from fmnist_edge.errors import ModelFileError
from fmnist_edge.runtime import manifest, preprocess
from fmnist_edge.train.config import make_config


def _choices(command: str, option: str) -> tuple[str, ...]:
    param = next(p for p in cli.commands[command].params if p.name == option)
    assert isinstance(param.type, click.Choice), f"{command} --{option} is not a choice"
    return tuple(param.type.choices)


def test_every_choice_the_cli_offers_is_accepted_by_the_library(tmp_path):
    for name in _choices("train", "optimizer"):
        assert make_config("tiny", optimizer=name).optimizer == name
    for name in _choices("train", "device"):
        assert make_config("tiny", device=name).device == name
    for name in _choices("train", "precision"):
        assert make_config("tiny", precision=name).precision == name
    assert _choices("predict", "precision") == _choices("serve", "precision")
    for name in _choices("predict", "precision")[1:]:  # past "auto": the runtime looks for that precision's files
        with pytest.raises(ModelFileError):
            manifest.locate(tmp_path / "missing", name)
    garment = np.kron(data.load().x_test[0], np.ones((3, 3), np.uint8))  # 84x84, bright garment on black
    for name in _choices("predict", "polarity"):
        image = 255 - garment if name == "photo" else garment
        assert preprocess.prepare(image, name).shape == (28, 28)


@pytest.mark.parametrize("command, option", [("convert", "formats"), ("convert", "precisions"), ("bench", "precisions")])
def test_comma_list_defaults_parse_as_the_library_parses_them(command, option):
    param = next(p for p in cli.commands[command].params if p.name == option)
    parsed = param.process_value(click.Context(cli.commands[command]), param.default)
    assert parsed and parse_list(param.default, parsed, option) == parsed


def test_loading_the_cli_loads_neither_openvino_nor_tensorflow():
    code = "import sys, fmnist_edge.cli; print(sorted({m.split('.')[0] for m in sys.modules} & {'openvino', 'tensorflow', 'keras'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
