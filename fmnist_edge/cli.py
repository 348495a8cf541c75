"""The `fmnist-edge` command line: a thin click front over the library; errors become one line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from .benchmarks.backends import DEFAULT_BACKENDS as BENCH_BACKENDS
from .contract import DEFAULT_FORMATS, DEFAULT_PRECISIONS, FORMATS, IR_PRECISIONS, POLARITIES
from .contract import PRECISIONS as OV_PRECISIONS
from .errors import FmnistEdgeError, first_line
from .serve.app import MAX_QUEUE
from .serve.server import MAX_CONNECTIONS
from .train.config import DEVICES, OPTIMIZER_DEFAULTS, RECIPES, TrainConfig
from .train.config import PRECISIONS as TRAIN_PRECISIONS
from .train.models import DEFAULT_ARCH


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


@click.group(cls=Group)
@click.version_option(package_name="fmnist-edge")
def cli():
    """Fashion-MNIST classifiers from Keras training to an OpenVINO edge runtime."""


@cli.command()
@click.option("--arch", default=None, help=f"Architecture from `fmnist-edge models` [default: {DEFAULT_ARCH}].")
@click.option("--epochs", type=int, default=None, help="Epochs at most (the arch's recipe sets the default).")
@click.option("--time-budget", "time_budget_min", type=float, default=None, metavar="MINUTES",
              help=f"End the training loop within MINUTES, running the epochs that fit with the learning-rate schedule "
                   f"fitted to them [default: {TrainConfig.time_budget_min:g} for our models, none for the source reports' "
                   f"networks]; 0 = no limit.")
@click.option("--batch-size", type=int, default=None, help="Mini-batch size.")
@click.option("--optimizer", type=click.Choice(list(OPTIMIZER_DEFAULTS)), default=None,
              help="Optimizer; picking another than the recipe's brings its own learning rate and weight decay.")
@click.option("--lr", "learning_rate", type=float, default=None, help="Peak learning rate.")
@click.option("--weight-decay", type=float, default=None, help="Decoupled weight decay.")
@click.option("--limit", type=int, default=None, help="Train on a stratified subset of N training images.")
@click.option("--test-limit", type=int, default=None, help="Evaluate on the first N test images only.")
@click.option("--val-fraction", type=float, default=None, help="Validation share of the training set [default: 0.1].")
@click.option("--no-augment", is_flag=True, help="Turn data augmentation off.")
@click.option("--quick", is_flag=True, help=f"Short budget ({RECIPES['quick']['epochs']} epochs), what the demo uses.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder with the Fashion-MNIST files.")
@click.option("--out", type=click.Path(), default="artifacts", show_default=True, help="Artifact folder to write.")
@click.option("--seed", type=int, default=None, help="Seed for the split and initialisation [default: 0].")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="Train on the GPU(s) (several: MirroredStrategy) or the CPU; auto: GPUs when TensorFlow sees any.")
@click.option("--precision", type=click.Choice(TRAIN_PRECISIONS), default=None,
              help="Compute precision (weights stay float32) [default: auto: bfloat16 on CPUs with AMX/AVX512-BF16, "
                   "else float32]; float16 needs a GPU.")
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
@click.option("--format", "formats", default=",".join(DEFAULT_FORMATS), show_default=True, callback=_names(FORMATS),
              help="Comma-separated formats: openvino, onnx, tflite (LiteRT).")
@click.option("--precision", "precisions", default=",".join(DEFAULT_PRECISIONS), show_default=True,
              callback=_names(OV_PRECISIONS), help="Comma-separated OpenVINO precisions (bf16: the fp32 IR computed in bf16).")
@click.option("--opset", type=int, default=None, help="ONNX opset [default: 17].")
@click.option("--calib-size", type=click.IntRange(min=1), default=300, show_default=True,
              help="INT8 calibration images from the training split.")
@click.option("--check", default="1000", show_default=True, help="Test images each artifact is checked on, or 'all'.")
@click.option("--max-drop", type=click.FloatRange(0, 1), default=0.01, show_default=True,
              help="Largest INT8 accuracy drop allowed (absolute).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder with the Fashion-MNIST files.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def convert(model, out, formats, precisions, opset, calib_size, check, max_drop, data_dir, as_json):
    """Convert MODEL (artifact folder, SavedModel or .keras/.h5) to OpenVINO IR and ONNX, each checked against TensorFlow."""
    from .convert import convert as run
    from .convert.manifest import table
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
@click.argument("folder", type=click.Path(), default="artifacts")
@click.option("--backends", default=",".join(BENCH_BACKENDS), show_default=True, callback=_names(BENCH_BACKENDS),
              help="Comma-separated backends to measure.")
@click.option("--precision", "precisions", default=",".join(OV_PRECISIONS), show_default=True,
              callback=_names(OV_PRECISIONS), help="OpenVINO precisions to measure.")
@click.option("--batch-sizes", default="1,64", show_default=True, callback=_int_list, help="Throughput batch sizes.")
@click.option("--warmup", type=click.IntRange(min=0), default=50, show_default=True, help="Untimed calls first.")
@click.option("--iters", type=click.IntRange(min=10), default=1000, show_default=True, help="Timed batch-1 calls.")
@click.option("--duration", type=click.FloatRange(min=0.1), default=None, help="Seconds per measurement instead of --iters.")
@click.option("--threads", type=click.IntRange(min=0), default=0, help="Threads for every backend [default: all usable cores].")
@click.option("--quick", is_flag=True, help="1,000 test images for accuracy and a tenth of the iterations.")
@click.option("--no-cold-start", is_flag=True, help="Skip the fresh-process cold-start measurements.")
@click.option("--no-photos", is_flag=True, help="Skip the photo path (camera-like JPEG -> label per frame size).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Result folder [default: FOLDER/bench].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="JSON results [default: OUT/bench.json].")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="CSV results [default: OUT/bench.csv].")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="PNG charts [default: OUT/bench.png].")
@click.option("--min-acc", type=click.FloatRange(0, 1), default=None, help="Fail if any backend's accuracy is below this.")
@click.option("--soak", type=click.IntRange(min=0), default=0, help="Also run N predictions from several threads and report memory.")
@click.option("--soak-threads", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder with the Fashion-MNIST files.")
def bench(folder, out, json_path, csv_path, plot_path, no_cold_start, no_photos, **opts):
    """Benchmark every backend on FOLDER's artifacts against the TensorFlow baseline."""
    from .benchmarks import bench as B
    from .benchmarks import output as report

    cfg = B.BenchConfig(folder=folder, cold_start=not no_cold_start, photos=not no_photos, **opts)
    out = Path(out or Path(folder) / "bench")
    stages = B.stages(cfg)
    with click.progressbar(stages, label="benchmarking", file=sys.stderr, show_eta=False, item_show_func=str) as bar:
        result = B.run(cfg, progress=lambda label: bar.update(max(0, stages.index(label) - bar.pos) if label in stages else 0, label))
        bar.update(len(stages) - bar.pos)
    click.echo(report.text(result))
    written = report.save(result, json_path or out / "bench.json", csv_path or out / "bench.csv", plot_path or out / "bench.png")
    click.echo("results: " + ", ".join(map(str, written)))
    failed = B.failures(result, cfg.min_acc)
    if failed:
        raise click.ClickException("; ".join(failed))


def _image_files(ctx, param, value):
    """A click callback: files and folders -> the image files (a folder stands for the images in it)."""
    from .runtime import expand_paths

    try:
        return expand_paths(value)
    except FmnistEdgeError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True), callback=_image_files)
@click.option("--model", "model_dir", type=click.Path(), default="artifacts", show_default=True,
              help="Artifact folder from `fmnist-edge convert`.")
@click.option("--precision", type=click.Choice(("auto", *OV_PRECISIONS)), default="auto", show_default=True,
              help="auto: the fastest precision on this CPU of those `convert` verified, timed at load.")
@click.option("--device", default="CPU", show_default=True, help="OpenVINO device (see `fmnist-edge info`).")
@click.option("--top-k", type=click.IntRange(1, 10), default=3, show_default=True, help="Classes to show per image.")
@click.option("--polarity", type=click.Choice(POLARITIES), default="auto", show_default=True,
              help="photo: dark garment on light background; dataset: bright garment on black.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image (JSON Lines).")
def predict(images, model_dir, precision, device, top_k, polarity, as_json):
    """Classify IMAGES (PNG, JPEG, BMP, WebP files; a folder stands for the images in it), one line each."""
    from .runtime import Classifier

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


@cli.command()
@click.option("--model", "model_dir", type=click.Path(), default="artifacts", show_default=True,
              help="Artifact folder from `fmnist-edge convert`.")
@click.option("--precision", type=click.Choice(("auto", *OV_PRECISIONS)), default="auto", show_default=True,
              help="auto: the fastest precision on this CPU of those `convert` verified, timed at load.")
@click.option("--device", default="CPU", show_default=True, help="OpenVINO device (see `fmnist-edge info`).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every network).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port (0: any free one).")
@click.option("--max-upload-mb", type=click.FloatRange(0.01, 100), default=10.0, show_default=True, help="Largest accepted upload.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU inference threads [default: OpenVINO's choice].")
@click.option("--repository", type=click.Path(file_okay=False), default=None,
              help="Serve a model repository (REPO/fmnist/<N>/, e.g. an artifact folder's serving/) instead of --model: "
                   "the newest version that verifies, and each new version as it appears.")
@click.option("--max-connections", type=click.IntRange(min=1), default=MAX_CONNECTIONS, show_default=True,
              help="Open connections at most; requests past that are answered 503.")
@click.option("--max-queue", type=click.IntRange(min=1), default=MAX_QUEUE, show_default=True,
              help="Requests waiting for the model at most; past that they are answered 503 with Retry-After.")
def serve(model_dir, precision, device, host, port, max_upload_mb, threads, repository, max_connections, max_queue):
    """Serve the kiosk page, its JSON API (POST /predict, GET /health), the Open Inference Protocol (/v2) and
    Prometheus metrics (/metrics) over one loaded model or a hot-reloaded model repository."""
    from .serve import serve as run

    run(model_dir, precision=precision, device=device, host=host, port=port,
        max_upload_bytes=int(max_upload_mb * 2**20), threads=threads, log=click.echo, repository=repository,
        max_connections=max_connections, max_queue=max_queue)


@cli.command()
@click.argument("artifacts", type=click.Path(), default="artifacts")
@click.argument("repository", type=click.Path(file_okay=False))
@click.option("--precision", type=click.Choice(IR_PRECISIONS), default="fp32", show_default=True,
              help="Which converted IR becomes the new version.")
def publish(artifacts, repository, precision):
    """Add ARTIFACTS' verified model to REPOSITORY as its next version (REPOSITORY/fmnist/<N>/, written under a
    hidden name and renamed into place: a server watching the repository swaps it in)."""
    from .convert.serving import publish as run

    folder = run(artifacts, repository, precision)
    click.echo(f"published {artifacts} ({precision}) as {folder}")


@cli.command()
@click.option("--arch", "archs", default=None, callback=lambda ctx, p, v: tuple(a.strip() for a in v.split(",") if a.strip()) if v else (),
              help="Comma-separated architectures [default: every one in `fmnist-edge models` but tiny].")
@click.option("--time-budget", "time_budget_min", type=click.FloatRange(0, 10_000), default=None, metavar="MINUTES",
              help="Training budget per model (0: none) [default: each recipe's].")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs at most per model [default: each recipe's].")
@click.option("--limit", type=click.IntRange(min=100), default=None, help="Train each on a stratified subset of N images.")
@click.option("--out", type=click.Path(file_okay=False), default="compare", show_default=True,
              help="Folder: one artifact folder per architecture, and compare.json/.csv/.png.")
@click.option("--resume", is_flag=True, help="Skip the stages whose outputs are already in --out; go on with an interrupted training.")
@click.option("--rebench", is_flag=True, help="As --resume, but benchmark every network again (on this CPU, in one run).")
@click.option("--bench-seconds", type=click.FloatRange(0.1, 600), default=2.0, show_default=True,
              help="How long each latency is measured.")
@click.option("--rounds", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Benchmark every network this many times, interleaved, and keep each figure's median.")
@click.option("--sweep", is_flag=True, help="Instead: report 001's MLP study (learning rate, batch size, activation) in --out/sweep.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder with the Fashion-MNIST files.")
def compare(sweep, **opts):
    """Train, convert and benchmark several architectures on this CPU, and print them side by side: accuracy
    (ours and their source report's), int8 accuracy, batch-1 latency, throughput, size, cold start, photo path."""
    from .studies import compare as C

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
    result = C.run(C.CompareConfig(**opts), log=click.echo)
    click.echo(C.table(result))
    click.echo(f"results: {', '.join(str(p) for p in C.save(result, Path(opts['out'])))}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(as_json):
    """List the OpenVINO devices and the installed package versions (without importing TensorFlow)."""
    from .runtime import devices, versions

    found, vers = devices(), versions()
    if as_json:
        click.echo(json.dumps({"devices": found, "versions": vers}, indent=2))
        return
    click.echo("OpenVINO devices:")
    for d in found:
        caps = ", ".join(d["optimization_capabilities"] or [])
        click.echo(f"  {d['device']:<8} {d['full_device_name'] or '?'}" + (f"  [{caps}]" if caps else ""))
    click.echo("versions:")
    for name, version in vers.items():
        click.echo(f"  {name:<24} {version or 'not installed'}")


def main() -> None:  # pragma: no cover
    cli(prog_name="fmnist-edge")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
