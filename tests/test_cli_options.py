"""The CLI's option vocabularies are the library's: a name added to a registry is a name the CLI accepts."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import click
import numpy as np
import pytest
from click.testing import CliRunner

from fmnist_edge import artifact, bounds, data
from fmnist_edge.benchmarks.bench import BenchConfig
from fmnist_edge.cli import cli
from fmnist_edge.convert.pipeline import ConvertConfig, parse_list
from fmnist_edge.errors import ConfigError, ModelFileError
from fmnist_edge.runtime import preprocess
from fmnist_edge.studies.compare import CompareConfig
from fmnist_edge.train.config import TrainConfig, make_config


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
            artifact.locate(tmp_path / "missing", name)
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


CONFIGS = [("train", TrainConfig), ("convert", ConvertConfig), ("bench", BenchConfig), ("compare", CompareConfig)]


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@pytest.mark.parametrize("command, config", CONFIGS)
def test_click_defaults_and_ranges_are_the_dataclass_ones(command, config):
    """The config dataclass is the one place a default or a range is written; click reads them from it."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    pairs = [(p, fields[p.name]) for p in cli.commands[command].params if p.name in fields]
    assert len(pairs) >= 5, [p.name for p, _ in pairs]
    ctx = click.Context(cli.commands[command])
    for param, field in pairs:
        value, rng = param.process_value(ctx, param.default), bounds.range_of(field)
        # train's are merged with the arch's recipe, then checked as one config: None (not given), the help says the rest
        merged = command == "train" and param.default is None and (field.default is not None or rng is not None)
        if merged:
            # None: what the option's absence means, in words ("all", "the network's own")
            assert ("[default: " if field.default is None else f"[default: {_shown(field.default)}") in param.help, param.name
            assert rng is None or str(rng) in param.help, param.name
            assert not isinstance(param.type, (click.IntRange, click.FloatRange)), param.name
            continue
        assert value == field.default or (isinstance(value, str) and value == str(field.default)), param.name  # --check
        if rng is not None and param.type in (click.STRING,):  # convert's --check: a number or 'all'; the config checks it
            assert str(rng) in param.help, param.name
        elif rng is not None:
            assert isinstance(param.type, click.IntRange if bounds.is_integer(field) else click.FloatRange), param.name
            t = param.type
            assert (t.min, t.max, t.min_open, t.max_open) == (rng.lo, rng.hi, rng.lo_open, rng.hi_open), param.name
        elif isinstance(param.type, (click.IntRange, click.FloatRange)):
            raise AssertionError(f"{command} --{param.name} has a range its dataclass does not declare")


# (command, old spelling, what the deprecation line advises, value slot, value)
OLD_SPELLINGS = [
    ("train", ["--precision", "bfloat16"], "use --compute-dtype", "precision", "bfloat16"),
    ("train", ["--device", "cpu"], "use --accelerator", "device", "cpu"),
    ("bench", ["--json", "r.json"], "use --json-out", "json_path", "r.json"),
    ("bench", ["--csv", "r.csv"], "use --csv-out", "csv_path", "r.csv"),
    ("bench", ["--plot", "r.png"], "use --plot-out", "plot_path", "r.png"),
    ("bench", ["--threads", "0"], "leave --threads out", "threads", None),
]


@pytest.mark.parametrize("command, old, advice, dest, value", OLD_SPELLINGS)
def test_an_old_spelling_still_works_with_one_deprecation_line(capsys, command, old, advice, dest, value):
    ctx = cli.commands[command].make_context(command, list(old))
    assert ctx.params[dest] == value
    assert not any(name.endswith("__old") for name in ctx.params)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"fmnist-edge: {old[0]}") and f"of {command} is deprecated; {advice}" in err[0]
    if advice.startswith("use "):  # a renamed option: its old spelling is a hidden option of its own
        (alias,) = [p for p in cli.commands[command].params if old[0] in p.opts]
        assert alias.hidden and old[0] not in CliRunner().invoke(cli, [command, "--help"]).output.replace(f"{old[0]}-", "")


@pytest.mark.parametrize("command, args, dest, value", [
    ("train", ["--compute-dtype", "float32"], "precision", "float32"),
    ("train", ["--accelerator", "gpu"], "device", "gpu"),
    ("bench", ["--json-out", "r.json", "--csv-out", "r.csv", "--plot-out", "r.png"], "json_path", "r.json"),
    ("bench", ["--threads", "3"], "threads", 3),
    ("serve", ["--threads", "3"], "threads", 3),
])
def test_the_new_spellings_work_without_a_word(capsys, command, args, dest, value):
    ctx = cli.commands[command].make_context(command, list(args))
    assert ctx.params[dest] == value
    assert capsys.readouterr().err == ""


def test_threads_means_the_same_in_bench_and_serve():
    for command in ("bench", "serve"):
        assert cli.commands[command].make_context(command, []).params["threads"] is None  # unset: each's default
        res = CliRunner().invoke(cli, [command, "--threads", "-1"])
        assert res.exit_code == 2 and "x>=1" in res.output


def test_old_and_new_spelling_together_is_refused():
    res = CliRunner().invoke(cli, ["train", "--precision", "float32", "--compute-dtype", "float32"])
    assert res.exit_code == 2 and "give --compute-dtype only" in res.output


def test_an_old_spelling_reaches_the_library(tmp_path):
    """End to end: train's old --precision is the compute dtype; bench's old --threads 0 is `unset`, not out of range."""
    res = CliRunner().invoke(cli, ["train", "--arch", "tiny", "--limit", "200", "--out", str(tmp_path / "o"),
                                   "--precision", "float16"])
    assert res.exit_code == 1 and "--compute-dtype float16 needs a GPU" in res.output
    assert [ln for ln in res.stderr.splitlines() if "deprecated" in ln] == [
        "fmnist-edge: --precision of train is deprecated; use --compute-dtype"]
    res = CliRunner().invoke(cli, ["bench", str(tmp_path / "none"), "--threads", "0"])
    assert res.exit_code == 1 and "holds no trained or converted model" in res.output
    assert len([ln for ln in res.stderr.splitlines() if "deprecated" in ln]) == 1


@pytest.mark.parametrize("args, option, bounds_text", [
    (["convert", "--calib-size", "0"], "--calib-size", "1<=x<=50000"),
    (["convert", "--max-drop", "1.5"], "--max-drop", "0<=x<=1"),
    (["bench", "--iters", "5"], "--iters", "x>=10"),
    (["bench", "--soak-threads", "0"], "--soak-threads", "x>=1"),
    (["compare", "--rounds", "101"], "--rounds", "1<=x<=100"),
    (["compare", "--time-budget", "-1"], "--time-budget", "0<=x<=10000"),
])
def test_a_value_out_of_range_is_one_line(args, option, bounds_text):
    res = CliRunner().invoke(cli, args)
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error")]
    assert res.exit_code == 2 and len(errors) == 1, res.output
    assert option in errors[0] and bounds_text in errors[0] and "Traceback" not in res.output


def test_train_checks_its_merged_config_in_one_line(tmp_path):
    res = CliRunner().invoke(cli, ["train", "--arch", "tiny", "--batch-size", "0", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and res.output.strip() == "Error: batch size must be in 1..65536, got 0"


@pytest.mark.parametrize("make, message", [
    (lambda: ConvertConfig(calib_size=0), "--calib-size must be in 1..50000 images, got 0"),
    (lambda: ConvertConfig(calib_size=2.5), "--calib-size must be an integer in 1..50000 images"),
    (lambda: ConvertConfig(max_drop=2.0), "--max-drop must be in 0..1"),
    (lambda: BenchConfig(folder=".", threads=0), r"--threads must be >= 1 \(unset: every usable core\), got 0"),
    (lambda: CompareConfig(archs=("tiny",), bench_seconds=0.0), "--bench-seconds must be in 0.1..600 seconds"),
    (lambda: TrainConfig(learning_rate=10.0), r"learning rate must be in \(0, 10\), got 10.0"),
    (lambda: TrainConfig(time_budget_min=-1), r"time budget must be in 0..10000 minutes \(0 = none\)"),
])
def test_the_dataclass_checks_the_same_ranges(make, message):
    with pytest.raises(ConfigError, match=message):
        make()
