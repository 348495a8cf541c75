"""The `fmnist-edge` command line: a thin click front over the library; errors become one line."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from . import bounds
from .benchmarks.backends import DEFAULT_BACKENDS as BENCH_BACKENDS
from .benchmarks.bench import BenchConfig
from .contract import FORMATS, IR_PRECISIONS, POLARITIES
from .contract import PRECISIONS as OV_PRECISIONS
from .convert.pipeline import ConvertConfig
from .errors import FmnistEdgeError, first_line
from .serve.app import MAX_QUEUE
from .serve.server import MAX_CONNECTIONS
from .studies.compare import CompareConfig
from .train.config import DEVICES, OPTIMIZER_DEFAULTS, RECIPES, TrainConfig
from .train.config import PRECISIONS as TRAIN_PRECISIONS
from .train.models import ACTIVATIONS


class Group(click.Group):
    """Turns the project's errors into one-line messages and a non-zero exit, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FmnistEdgeError as exc:
            raise click.ClickException(str(exc)) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            raise click.Abort() from None
        except Exception as exc:  # noqa: BLE001 - last resort: still one line
            if os.environ.get("FMNIST_EDGE_DEBUG"):
                raise
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {first_line(exc, 300)} (set FMNIST_EDGE_DEBUG=1 for the traceback)"
            ) from None


def _echo_err(msg: str) -> None:
    click.echo(msg, err=True)


def _deprecated(what: str, advice: str) -> None:
    """The one stderr line an old spelling prints (it still works)."""
    _echo_err(f"fmnist-edge: {what} is deprecated; {advice}")


class _Renamed(click.Option):
    """A renamed option's old spelling: hidden, with a value slot of its own until `Command` hands it to the new one."""

    def __init__(self, decls, *, new: str, dest: str, **kw):
        super().__init__(decls, hidden=True, **kw)
        self.new, self.dest = new, dest


class Command(click.Command):
    """A subcommand whose renamed options still answer to their old spelling, with one deprecation line on stderr."""

    def parse_args(self, ctx, args):
        rest = super().parse_args(ctx, args)
        for old in [p for p in self.params if isinstance(p, _Renamed)]:
            value = ctx.params.pop(old.name, None)
            if ctx.get_parameter_source(old.name) is not ParameterSource.COMMANDLINE:
                continue
            if ctx.get_parameter_source(old.dest) is ParameterSource.COMMANDLINE:
                raise click.UsageError(f"{old.opts[0]} is the old spelling of {old.new}; give {old.new} only", ctx)
            _deprecated(f"{old.opts[0]} of {self.name}", f"use {old.new}")
            ctx.params[old.dest] = value
            ctx.set_parameter_source(old.dest, ParameterSource.COMMANDLINE)
        return rest


Group.command_class = Command


def _renamed(old: str, new: str, dest: str, **kw):
    """`old`, what option `new` (value `dest`) was called before: hidden, and it still works."""
    return click.option(old, f"{dest}__old", cls=_Renamed, new=new, dest=dest, default=None, **kw)


class _ZeroIsUnset(click.IntRange):
    """An IntRange whose old value 0 still means "leave it out", with one deprecation line (bench's `--threads 0`)."""

    def convert(self, value, param, ctx):
        if str(value).strip() == "0":
            _deprecated(f"{param.opts[0]} 0 of {ctx.info_name}", f"leave {param.opts[0]} out (it means the same)")
            return None
        return super().convert(value, param, ctx)


def _field(config, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(config) if f.name == name)


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _number_type(field: dataclasses.Field, ranged: bool = True, kind=None):
    """The click type of a numeric field: IntRange/FloatRange with the field's declared range, else int/float."""
    rng = bounds.range_of(field) if ranged else None
    integer = bounds.is_integer(field)
    if rng is None:
        return int if integer else float
    kind = kind or (click.IntRange if integer else click.FloatRange)
    return kind(min=rng.lo, max=rng.hi, min_open=rng.lo_open, max_open=rng.hi_open)


def _from(config, name: str, *decls: str, help: str, merged: str | None = None, **kw):
    """A click option whose default (shown in its help) and range are `config`'s field `name`: the dataclass is the
    one place they are written. Without `type`, a numeric field gets its range as IntRange/FloatRange; a tuple default
    becomes 'a,b' (for a callback that splits it) and, with `type=str`, any default its text.
    `merged`: the value is merged into the config later (train: with the arch's recipe, then checked as one
    TrainConfig), so the option defaults to None (not given); its help shows `merged` with "{}" standing for the
    dataclass default, and the range the config checks."""
    field = _field(config, name)
    decls = decls or (f"--{name.replace('_', '-')}",)
    if merged is not None:
        rng = bounds.range_of(field)
        help += f"  [default: {merged.format(_show(field.default))}" + (f"; {rng}]" if rng else "]")
        kw.setdefault("type", _number_type(field, ranged=False))
        return click.option(*decls, name, default=None, help=help, **kw)
    default = field.default
    if "type" not in kw and "callback" not in kw and not isinstance(default, (bool, tuple, str)):
        kw["type"] = _number_type(field)
    elif bounds.range_of(field) and not isinstance(kw.get("type"), (click.IntRange, click.FloatRange)):
        help += f"  [{bounds.range_of(field)}]"  # the config checks it (convert's --check: a number or 'all')
    if isinstance(default, tuple) or (kw.get("type") is str and default is not None):
        default = _show(default)
    return click.option(*decls, name, default=default, show_default=default is not None, help=help, **kw)


@click.group(cls=Group)
@click.version_option(package_name="fmnist-edge")
def cli():
    """Fashion-MNIST classifiers from Keras training to an OpenVINO edge runtime."""


RECIPE = "{} or the arch's recipe's"


@cli.command()
@_from(TrainConfig, "arch", help="Architecture from `fmnist-edge models`.", merged="{}", type=str)
@_from(TrainConfig, "epochs", help="Epochs at most.", merged=RECIPE)
@_from(TrainConfig, "time_budget_min", "--time-budget", metavar="MINUTES",
       help="End the training loop within MINUTES, running the epochs that fit with the learning-rate schedule fitted "
            "to them.", merged="{} for our models, none for the source reports' networks")
@_from(TrainConfig, "batch_size", help="Mini-batch size.", merged=RECIPE)
@_from(TrainConfig, "optimizer", type=click.Choice(list(OPTIMIZER_DEFAULTS)), merged=RECIPE,
       help="Optimizer; picking another than the recipe's brings its own learning rate and weight decay.")
@_from(TrainConfig, "learning_rate", "--lr", help="Peak learning rate.", merged="{} or the optimizer's or recipe's")
@_from(TrainConfig, "weight_decay", help="Decoupled weight decay.", merged="{} or the optimizer's or recipe's")
@_from(TrainConfig, "limit", help="Train on a stratified subset of N training images.", merged="all")
@_from(TrainConfig, "test_limit", help="Evaluate on the first N test images only.", merged="all")
@_from(TrainConfig, "val_fraction", help="Validation share of the training set.", merged=RECIPE)
@_from(TrainConfig, "label_smoothing", help="Label smoothing of the loss.", merged=RECIPE)
@_from(TrainConfig, "ema", help="Keep a moving average of the weights with this momentum per step and end with it "
       "(0: off).", merged=RECIPE)
@_from(TrainConfig, "width", help="Scale every convolution's filters and hidden dense layer's units.", merged="{}")
@_from(TrainConfig, "activation", type=click.Choice(ACTIVATIONS), merged="the network's own",
       help="Put this activation in every hidden layer.")
@_from(TrainConfig, "dropout", help="Rate of every dropout layer (a network without one gets one before its "
       "classifier).", merged="the network's own")
@click.option("--no-augment", is_flag=True, help="Turn data augmentation off.")
@click.option("--quick", is_flag=True, help=f"Short budget ({RECIPES['quick']['epochs']} epochs), what the demo uses.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder with the Fashion-MNIST files.")
@_from(TrainConfig, "out", type=click.Path(), help="Artifact folder to write.")
@_from(TrainConfig, "seed", help="Seed for the split and initialisation.")
@_from(TrainConfig, "device", "--accelerator", type=click.Choice(DEVICES),
       help="Train on the GPU(s) (several: MirroredStrategy) or the CPU; auto: GPUs when TensorFlow sees any.")
@_renamed("--device", "--accelerator", "device", type=click.Choice(DEVICES))
@_from(TrainConfig, "precision", "--compute-dtype", type=click.Choice(TRAIN_PRECISIONS),
       help="Compute dtype (weights stay float32); auto: bfloat16 on CPUs with AMX/AVX512-BF16, else float32; "
            "float16 needs a GPU.")
@_renamed("--precision", "--compute-dtype", "precision", type=click.Choice(TRAIN_PRECISIONS))
@click.option("--resume", is_flag=True, help="Go on from the last whole epoch of an interrupted run into --out.")
def train(arch, no_augment, quick, resume, **opts):
    """Train a CNN on Fashion-MNIST and save .keras, .h5, SavedModel and reports."""
    from .train.config import make_config
    from .train.trainer import train as run

    cfg = make_config(arch, quick=quick, augment=False if no_augment else None, **opts)
    run(cfg, log=click.echo, resume=resume)


@cli.command()
@click.argument("folder", type=click.Path(), default="artifacts")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder with the Fashion-MNIST files.")
@click.option("--test-limit", type=click.IntRange(min=10), default=None, help="Evaluate on the first N test images only.")
def evaluate(folder, data_dir, test_limit):
    """Re-create FOLDER/report/ from the saved model."""
    from .train.evaluation import evaluate_artifacts

    evaluate_artifacts(folder, data_dir=data_dir, test_limit=test_limit, log=click.echo)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models(as_json):
    """List the registered architectures with parameter counts and sources."""
    from .train.models import catalog

    rows = catalog()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'name':<18} {'params':>10} {'MMACs':>7}  source")
    for r in rows:
        click.echo(f"{r['name']:<18} {r['params']:>10,} {r['macs'] / 1e6:>7.1f}  {r['source']}")


def _names(known):
    """A click callback: 'a,b' -> a tuple of known names, else BadParameter naming the known ones."""

    def parse(ctx, param, value):
        from .convert.pipeline import parse_list
        from .errors import ConfigError

        try:
            return parse_list(value, known, param.name)
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from None

    return parse


@cli.command()
@click.argument("model", type=click.Path(), default="artifacts")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder [default: the model's artifact folder].")
@_from(ConvertConfig, "formats", "--format", callback=_names(FORMATS),
       help="Comma-separated formats: openvino, onnx, tflite (LiteRT).")
@_from(ConvertConfig, "precisions", "--precision", callback=_names(OV_PRECISIONS),
       help="Comma-separated precisions (bf16: the fp32 IR computed in bf16); int8 and fp16 also make the peers' own "
            "(onnx int8, tflite fp16 and int8) where their format is asked for.")
@_from(ConvertConfig, "opset", type=int, help="ONNX opset.")  # its range is onnx_export.OPSETS, checked by ConvertConfig
@_from(ConvertConfig, "calib_size", help="INT8 calibration images from the training split.")
@_from(ConvertConfig, "check", type=str, help="Test images each artifact is checked on.")
@_from(ConvertConfig, "max_drop", help="Largest INT8 accuracy drop allowed (absolute).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder with the Fashion-MNIST files.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def convert(model, out, formats, precisions, opset, calib_size, check, max_drop, data_dir, as_json):
    """Convert MODEL (artifact folder, SavedModel or .keras/.h5) to OpenVINO IR, ONNX and LiteRT, each checked against TensorFlow."""
    from .artifact import manifest_table as table
    from .convert import convert as run
    from .errors import ConversionError

    opts = dict(out=out, formats=formats, precisions=precisions, opset=opset, calib_size=calib_size, check=check,
                max_drop=max_drop, data_dir=data_dir, log=_echo_err if as_json else click.echo)
    try:
        manifest = run(model, **opts)
    except ConversionError as exc:
        if getattr(exc, "manifest", None):  # written, but an artifact failed its check: show the figures, then fail
            click.echo(json.dumps(exc.manifest, indent=2) if as_json else table(exc.manifest))
        raise
    click.echo(json.dumps(manifest, indent=2) if as_json else table(manifest))


def _int_list(ctx, param, value):
    try:
        return tuple(int(v) for v in str(value).split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None


@cli.command()
@click.argument("folder", type=click.Path(), default=_field(BenchConfig, "folder").default)
@_from(BenchConfig, "backends", callback=_names(BENCH_BACKENDS), help="Comma-separated backends to measure.")
@_from(BenchConfig, "precisions", "--precision", callback=_names(OV_PRECISIONS),
       help="Precisions to measure: OpenVINO's, and onnxruntime's and LiteRT's where they offer them.")
@_from(BenchConfig, "batch_sizes", callback=_int_list, help="Throughput batch sizes.")
@_from(BenchConfig, "warmup", help="Untimed calls first.")
@_from(BenchConfig, "iters", help="Timed batch-1 calls.")
@_from(BenchConfig, "duration", help="Seconds per measurement instead of --iters.")
@_from(BenchConfig, "threads", type=_number_type(_field(BenchConfig, "threads"), kind=_ZeroIsUnset),
       help="CPU inference threads of every backend alike [default: unset: every usable core].")
@_from(BenchConfig, "quick", is_flag=True, help="1,000 test images for accuracy and a tenth of the iterations.")
@click.option("--no-cold-start", is_flag=True, help="Skip the fresh-process cold-start measurements.")
@click.option("--no-photos", is_flag=True, help="Skip the photo path (camera-like JPEG -> label per frame size).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Result folder [default: FOLDER/bench].")
@click.option("--json-out", "json_path", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="JSON results [default: OUT/bench.json].")
@_renamed("--json", "--json-out", "json_path", type=click.Path(dir_okay=False))
@click.option("--csv-out", "csv_path", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="CSV results [default: OUT/bench.csv].")
@_renamed("--csv", "--csv-out", "csv_path", type=click.Path(dir_okay=False))
@click.option("--plot-out", "plot_path", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="PNG charts [default: OUT/bench.png].")
@_renamed("--plot", "--plot-out", "plot_path", type=click.Path(dir_okay=False))
@_from(BenchConfig, "min_acc", help="Fail if any backend's accuracy is below this.")
@_from(BenchConfig, "soak", help="Also run N predictions from several threads and report memory.")
@_from(BenchConfig, "soak_threads", help="Threads of the soak.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder with the Fashion-MNIST files.")
def bench(folder, out, json_path, csv_path, plot_path, no_cold_start, no_photos, **opts):
    """Benchmark every backend on FOLDER's artifacts against the TensorFlow baseline and, precision for precision, the peers."""
    from . import artifact
    from .benchmarks import bench as B
    from .benchmarks import output as report

    cfg = BenchConfig(folder=folder, cold_start=not no_cold_start, photos=not no_photos, **opts)
    out = Path(out or artifact.Layout(folder).bench)
    stages = B.stages(cfg)
    with click.progressbar(stages, label="benchmarking", file=sys.stderr, show_eta=False, item_show_func=str) as bar:
        result = B.run(cfg, progress=lambda label: bar.update(max(0, stages.index(label) - bar.pos) if label in stages else 0, label))
        bar.update(len(stages) - bar.pos)
    click.echo(report.text(result))
    written = report.save(result, json_path or out / artifact.BENCH_JSON, csv_path or out / artifact.BENCH_CSV,
                          plot_path or out / artifact.BENCH_PNG)
    click.echo("results: " + ", ".join(map(str, written)))
    failed = B.failures(result, cfg.min_acc)
    if failed:
        raise click.ClickException("; ".join(failed))


def _image_files(ctx, param, value):
    """A click callback: files and folders -> the image files (a folder stands for the images in it); with
    `--ray`, the one folder or s3:// prefix as given (Ray Data lists it)."""
    from .runtime import expand_paths

    if ctx.params.get("ray"):
        if len(value) != 1:
            raise click.BadParameter("--ray takes one SOURCE: a folder of images or an s3:// prefix")
        return value
    value = tuple(click.Path(exists=True).convert(v, param, ctx) for v in value)
    try:
        return expand_paths(value)
    except FmnistEdgeError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(), callback=_image_files)
@click.option("--model", "model_dir", type=click.Path(), default="artifacts", show_default=True,
              help="Artifact folder from `fmnist-edge convert`.")
@click.option("--precision", type=click.Choice(("auto", *OV_PRECISIONS)), default="auto", show_default=True,
              help="auto: the fastest precision on this CPU of those `convert` verified, timed at load.")
@click.option("--device", default="CPU", show_default=True, help="OpenVINO device (see `fmnist-edge info`).")
@click.option("--top-k", type=click.IntRange(1, 10), default=3, show_default=True, help="Classes to show per image.")
@click.option("--polarity", type=click.Choice(POLARITIES), default="auto", show_default=True,
              help="photo: dark garment on light background; dataset: bright garment on black.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image (JSON Lines).")
@click.option("--ray", "ray", default=None, metavar="ADDRESS", is_eager=True,
              help="Classify the folder or s3:// prefix IMAGES on Ray Data into --out: `local` (Ray on this machine), "
                   "`auto` (the cluster `ray start` runs here) or HOST:PORT of a head node.")
@click.option("--out", type=click.Path(), default=None, help="With --ray: the Parquet dataset to write (a folder of part files).")
@click.option("--actors", type=click.IntRange(min=1), default=None, help="With --ray: classifying actors at most [default: as CPUs allow].")
def predict(images, model_dir, precision, device, top_k, polarity, as_json, ray, out, actors):
    """Classify IMAGES (PNG, JPEG, BMP, WebP files; a folder stands for the images in it), one line each."""
    from .runtime import Classifier

    if ray or out or actors:
        if not (ray and out):
            raise click.UsageError("--ray and --out go together: --ray ADDRESS SOURCE --out predictions.parquet")
        if as_json:
            raise click.UsageError("--ray writes Parquet to --out; leave out --json")
        from .cluster.predict import run as run_on_ray

        done = run_on_ray(images[0], out, model_dir, address=ray, precision=precision, device=device, top_k=top_k,
                          polarity=polarity, actors=actors, log=_echo_err)
        click.echo(f"{done['images']} images, {done['errors']} with an error ({done['precision']}): {done['out']}")
        return

    clf = Classifier.load(model_dir, precision=precision, device=device, polarity=polarity)
    failed = 0
    # decoded on every core, classified in batches, printed in input order as they finish
    for path, p in zip(images, clf.predict_iter(images, top_k=top_k, errors="return", processes="auto"), strict=True):
        if isinstance(p, FmnistEdgeError):  # one bad image does not stop the others
            failed += 1
            if as_json:
                click.echo(json.dumps({"file": str(path), "error": p.reason}))
            else:
                _echo_err(f"{path}: error: {p.reason}")
            continue
        if as_json:
            click.echo(json.dumps({"file": str(path), **p.to_dict()}))
        else:
            others = ", ".join(f"{n} {q:.3f}" for n, q in p.top_k)
            click.echo(f"{path}\t{p.label}\t{p.confidence:.3f}\t{others}")
    if failed:
        raise click.ClickException(f"{failed} of {len(images)} images could not be classified")


class VersionPolicyType(click.ParamType):
    """`serve --versions`: latest:N | specific:A,B | all, as a serve.repository.VersionPolicy; one error line if bad."""

    name = "POLICY"

    def convert(self, value, param, ctx):
        from .serve.repository import VersionPolicy

        if isinstance(value, VersionPolicy):
            return value
        try:
            return VersionPolicy.parse(value)
        except FmnistEdgeError as exc:
            self.fail(str(exc), param, ctx)


@cli.command()
@click.option("--model", "model_dir", type=click.Path(), default="artifacts", show_default=True,
              help="Artifact folder from `fmnist-edge convert`.")
@click.option("--precision", type=click.Choice(("auto", *OV_PRECISIONS)), default="auto", show_default=True,
              help="auto: the fastest precision on this CPU of those `convert` verified, timed at load.")
@click.option("--device", default="CPU", show_default=True, help="OpenVINO device (see `fmnist-edge info`).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every network).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port (0: any free one).")
@click.option("--max-upload-mb", type=click.FloatRange(0.01, 100), default=10.0, show_default=True, help="Largest accepted upload.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU inference threads [default: unset: OpenVINO's choice].")
@click.option("--repository", type=click.Path(file_okay=False), default=None,
              help="Serve a model repository (REPO/fmnist/<N>/, e.g. an artifact folder's serving/; or s3://BUCKET/PREFIX, "
                   "gs://BUCKET/PREFIX, https://HOST/PATH, file://PATH) instead of --model: the newest version that "
                   "verifies, and each new version as it appears.")
@click.option("--poll-seconds", "poll_s", type=click.FloatRange(0.05, 3600), default=None,
              help="How often --repository is looked at for new versions [default: 1 for a folder, 10 for a remote store].")
@click.option("--cache", type=click.Path(file_okay=False), default=None,
              help="Where the versions of a remote --repository are kept [default: ~/.cache/fmnist-edge/<URI>].")
@click.option("--max-connections", type=click.IntRange(min=1), default=MAX_CONNECTIONS, show_default=True,
              help="Open connections at most; requests past that are answered 503.")
@click.option("--max-queue", type=click.IntRange(min=1), default=MAX_QUEUE, show_default=True,
              help="Requests waiting for the model at most; past that they are answered 503 with Retry-After.")
@click.option("--max-batch-delay-us", type=click.IntRange(0, 1_000_000), default=0, show_default=True,
              help="Dynamic batching: how long a v2 infer request may wait for others to share its model call "
                   "(0: each runs alone).")
@click.option("--preferred-batch-size", "preferred", type=click.IntRange(1, 64), multiple=True,
              help="A batch size to send as soon as that many images wait (repeatable) [default: 64].")
@click.option("--grpc-port", type=click.IntRange(0, 65535), default=None,
              help="Also serve the inference protocol over gRPC (KServe v2 / Triton's GRPCInferenceService) on this "
                   "port of --host (0: any free one) [default: no gRPC].")
@click.option("--tls-cert", type=click.Path(dir_okay=False), default=None,
              help="TLS certificate chain (PEM): the kiosk and /v2 speak HTTPS, and the gRPC port TLS.")
@click.option("--tls-key", type=click.Path(dir_okay=False), default=None,
              help="The private key (PEM, unencrypted) of --tls-cert.")
@click.option("--trust", "trust", type=click.Path(dir_okay=False), multiple=True, metavar="PUBKEY",
              help="Serve only versions signed by this public key (repeatable; `fmnist-edge keygen` makes one) "
                   "[default: no check].")
@click.option("--admin-token-file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="A file (mode 0600) holding the bearer token that the repository extension (/v2/repository/...) "
                   "and /metrics need [default: they are off].")
@click.option("--versions", "versions", type=VersionPolicyType(), default="latest:1", show_default=True,
              help="Which versions of --repository serve: latest:N (the N newest that pass the gates), "
                   "specific:A,B or all; the newest of them is current.")
@click.option("--canary", "canary_percent", type=click.FloatRange(0, 100, min_open=True), default=None, metavar="P",
              help="Try each new version of --repository on P% of the requests first; promoted if no worse, "
                   "rolled back by itself otherwise [default: a version that passes its gates serves at once].")
@click.option("--canary-requests", type=click.IntRange(min=1), default=200, show_default=True,
              help="How many requests the canary answers before its verdict ...")
@click.option("--canary-seconds", type=click.FloatRange(0, min_open=True), default=60.0, show_default=True,
              help="... or how long it runs, whichever comes first.")
def serve(model_dir, precision, device, host, port, max_upload_mb, threads, repository, poll_s, cache, max_connections, max_queue,
          max_batch_delay_us, preferred, grpc_port, tls_cert, tls_key, trust, admin_token_file, versions,
          canary_percent, canary_requests, canary_seconds):
    """Serve the kiosk page, its JSON API (POST /predict, GET /health), the Open Inference Protocol (/v2; with
    --grpc-port over gRPC too) and Prometheus metrics (/metrics) over one loaded model or a hot-reloaded model
    repository."""
    from .serve import serve as run
    from .serve.canary import CanaryPolicy

    canary = None if canary_percent is None else CanaryPolicy(canary_percent, canary_requests, canary_seconds)
    run(model_dir, precision=precision, device=device, host=host, port=port,
        max_upload_bytes=int(max_upload_mb * 2**20), threads=threads, log=click.echo, repository=repository,
        max_connections=max_connections, max_queue=max_queue, max_batch_delay_us=max_batch_delay_us,
        preferred_batch_sizes=tuple(preferred), grpc_port=grpc_port, tls_cert=tls_cert, tls_key=tls_key,
        trust=tuple(trust), cache=cache, admin_token_file=admin_token_file, versions=versions, canary=canary,
        poll_s=poll_s)


@cli.command()
@click.argument("artifacts", type=click.Path(), default="artifacts")
@click.argument("repository", type=click.Path(file_okay=False))
@click.option("--precision", type=click.Choice(IR_PRECISIONS), default="fp32", show_default=True,
              help="Which converted IR becomes the new version.")
@click.option("--sign", "key", type=click.Path(dir_okay=False), default=None, metavar="KEY",
              help="Sign every file of the version with this private key (`fmnist-edge keygen`) [default: unsigned].")
def publish(artifacts, repository, precision, key):
    """Add ARTIFACTS' verified model to REPOSITORY as its next version (REPOSITORY/fmnist/<N>/, written under a
    hidden name and renamed into place: a server watching the repository swaps it in). REPOSITORY may be
    s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or file://PATH: the version is uploaded under a hidden prefix, its READY
    marker last, then the index that kiosks reading the store over https:// need."""
    from .convert.serving import publish as run

    folder = run(artifacts, repository, precision, sign=key)
    click.echo(f"published {artifacts} ({precision}) as {folder}{' (signed)' if key else ''}")


@cli.command()
@click.argument("prefix", type=click.Path(dir_okay=False))
def keygen(prefix):
    """Write a signing key pair: PREFIX (EC P-256 private key, PEM, mode 0600; keep it off the kiosks) and
    PREFIX.pub (its public key, for `serve --trust` and `verify --trust`). Never overwrites a key."""
    from .signing import fingerprint
    from .signing import keygen as run

    private, public = run(prefix)
    click.echo(f"private key {private}, public key {public} (fingerprint {fingerprint(public.read_bytes())[:16]})")


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--trust", "trust", type=click.Path(dir_okay=False), multiple=True, required=True, metavar="PUBKEY",
              help="A public key whose signature is accepted (repeatable).")
def verify(folder, trust):
    """Check the signature of a version folder (or of the newest version of a repository or artifact folder's
    serving/): prints ok and the key, or one line that says what fails, and exits 1."""
    from .signing import signed_folder
    from .signing import verify as run

    target = signed_folder(folder)
    key = run(target, trust)
    click.echo(f"{target}: ok, signed by {key.short} ({key.source})")


@cli.command()
@click.option("--arch", "archs", default=None, callback=lambda ctx, p, v: tuple(a.strip() for a in v.split(",") if a.strip()) if v else (),
              help="Comma-separated architectures [default: every one in `fmnist-edge models` but tiny].")
@_from(CompareConfig, "time_budget_min", "--time-budget", metavar="MINUTES",
       help="Training budget per model (0: none) [default: each recipe's].")
@_from(CompareConfig, "epochs", help="Epochs at most per model [default: each recipe's].")
@_from(CompareConfig, "limit", help="Train each on a stratified subset of N images [default: all].")
@_from(CompareConfig, "out", type=click.Path(file_okay=False),
       help="Folder: one artifact folder per architecture, and compare.json/.csv/.png.")
@click.option("--resume", is_flag=True, help="Skip the stages whose outputs are already in --out; go on with an interrupted training.")
@click.option("--rebench", is_flag=True, help="As --resume, but benchmark every network again (on this CPU, in one run).")
@_from(CompareConfig, "bench_seconds", help="How long each latency is measured.")
@_from(CompareConfig, "rounds", help="Benchmark every network this many times, interleaved, and keep each figure's median.")
@click.option("--sweep", is_flag=True, help="Instead: report 001's MLP study (learning rate, batch size, activation) in --out/sweep.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder with the Fashion-MNIST files.")
@click.option("--ray", "ray", default=None, metavar="ADDRESS",
              help="Run each network as a Ray Tune trial: `local` (Ray on this machine), `auto` or HOST:PORT of a cluster.")
@click.option("--cpus-per-trial", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --ray: CPUs per trial (TensorFlow's and OpenVINO's threads).")
@click.option("--storage", default=None, metavar="FOLDER",
              help="With --ray: trial results and checkpoints (a folder every node reaches, or s3://...) [default: OUT/ray].")
def compare(sweep, ray, cpus_per_trial, storage, **opts):
    """Train, convert and benchmark several architectures on this CPU, and print them side by side: accuracy
    (ours and their source report's), int8 accuracy, batch-1 latency, throughput, size, cold start, photo path."""
    from .studies import compare as C

    ctx = click.get_current_context()
    if not ray and any(ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE for k in ("cpus_per_trial", "storage")):
        raise click.UsageError("--cpus-per-trial and --storage go with --ray")
    if ray:
        if sweep:
            raise click.UsageError("--sweep runs on this machine; leave out --ray")
        from .cluster.tune import run as run_on_ray

        cfg = CompareConfig(**{k: v for k, v in opts.items() if k != "resume"})
        result = run_on_ray(cfg, address=ray, cpus_per_trial=cpus_per_trial, storage=storage, resume=opts["resume"],
                            log=click.echo)
        click.echo(C.table(result))
        click.echo(f"results: {', '.join(str(p) for p in C.save(result, Path(opts['out'])))}")
        return
    if sweep:
        if opts["archs"]:
            raise click.UsageError("--sweep trains report 001's MLP only; leave out --arch")
        given = [f"--{k.replace('_', '-')}" for k in ("rebench", "rounds", "bench_seconds")
                 if click.get_current_context().get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"--sweep measures accuracy only, there is nothing to benchmark; leave out {', '.join(given)}")
        out = Path(opts["out"]) / "sweep"
        result = C.sweep(out, epochs=opts["epochs"], time_budget_min=opts["time_budget_min"], limit=opts["limit"],
                         resume=opts["resume"], data_dir=opts["data_dir"], log=click.echo)
        click.echo(C.sweep_table(result))
        click.echo(f"results: {', '.join(str(p) for p in C.save_sweep(result, out))}")
        return
    result = C.run(CompareConfig(**opts), log=click.echo)
    click.echo(C.table(result))
    click.echo(f"results: {', '.join(str(p) for p in C.save(result, Path(opts['out'])))}")


@cli.command()
@click.option("--ray", "ray", default="local", show_default=True, metavar="ADDRESS",
              help="`local` (Ray on this machine), `auto` (the cluster `ray start` runs here) or HOST:PORT of a head node.")
@click.option("--arch", "archs", default=None, callback=lambda ctx, p, v: tuple(a.strip() for a in v.split(",") if a.strip()) if v else (),
              help="Comma-separated architectures to search over [default: every one in `fmnist-edge models` but tiny].")
@click.option("--num-samples", type=click.IntRange(1, 10_000), default=8, show_default=True,
              help="Trials (random, optuna), or repeats of the whole grid (grid).")
@click.option("--search", type=click.Choice(("random", "grid", "optuna")), default="random", show_default=True,
              help="How recipes are picked; optuna needs `pip install optuna`.")
@click.option("--time-budget", "time_budget_min", type=click.FloatRange(0, 100_000), default=0, show_default=True,
              metavar="MINUTES", help="For the whole sweep (0: none); trials still running then are stopped.")
@click.option("--early-stop/--no-early-stop", default=True, show_default=True,
              help="ASHA stops the trials whose validation accuracy falls behind after an epoch; off: every trial runs "
                   "to its end.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs at most per trial [default: each recipe's].")
@click.option("--limit", type=click.IntRange(min=100), default=None, help="Train each trial on N images [default: all].")
@click.option("--bench-seconds", type=click.FloatRange(0.1, 600), default=2.0, show_default=True, help="How long each latency is measured.")
@click.option("--cpus-per-trial", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPUs per trial (TensorFlow's and OpenVINO's threads).")
@click.option("--storage", default=None, metavar="FOLDER", help="Trial results and checkpoints [default: OUT/ray].")
@click.option("--resume", is_flag=True, help="Go on with the sweep in --storage; finished trials are not run again.")
@click.option("--out", type=click.Path(file_okay=False), default="sweep", show_default=True,
              help="Folder: compare.json/.csv/.png over the finished trials, trials.json/.csv, trials/ID artifact folders.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder with the Fashion-MNIST files.")
def sweep(ray, cpus_per_trial, storage, resume, **opts):
    """Search the registry's networks, reshaped, and their training recipe on Ray Tune (ASHA stops hopeless trials
    between epochs), print compare's table over the finished trials, every trial, and the best (by validation
    accuracy) as a `train` command."""
    from .cluster import sweep as S

    result = S.run(S.SweepConfig(**opts), address=ray, cpus_per_trial=cpus_per_trial, storage=storage, resume=resume,
                   log=click.echo)
    if result["rows"]:
        from .studies import compare as C

        click.echo(C.table(result))
    click.echo(S.trials_table(result))
    click.echo(f"best: {result['command']}")
    click.echo(f"results: {', '.join(str(p) for p in S.save(result, Path(opts['out'])))}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(as_json):
    """List the OpenVINO devices and the installed package versions (without importing TensorFlow)."""
    from .runtime import devices, package_versions

    found, vers = devices(), package_versions()
    if as_json:
        click.echo(json.dumps({"devices": found, "packages": vers}, indent=2))
        return
    click.echo("OpenVINO devices:")
    for d in found:
        caps = ", ".join(d["optimization_capabilities"] or [])
        click.echo(f"  {d['device']:<8} {d['full_device_name'] or '?'}" + (f"  [{caps}]" if caps else ""))
    click.echo("packages:")
    for name, version in vers.items():
        click.echo(f"  {name:<24} {version or 'not installed'}")


def main() -> None:  # pragma: no cover
    cli(prog_name="fmnist-edge")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
