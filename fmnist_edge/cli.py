"""The `fmnist-edge` command line: a thin click front over the library; errors become one line."""

from __future__ import annotations

import json
import os
import sys

import click

from .benchmarks.backends import DEFAULT_BACKENDS as BENCH_BACKENDS
from .errors import FmnistEdgeError
from .train.config import DEVICES, OPTIMIZER_DEFAULTS, RECIPES, TrainConfig
from .train.config import PRECISIONS as TRAIN_PRECISIONS
from .train.models import DEFAULT_ARCH

# The names the converter and the runtime own (convert.FORMATS, runtime.PRECISIONS, runtime.preprocess.POLARITIES),
# repeated here because importing either package would load OpenVINO for every command; a test keeps them equal.
FORMATS = ("openvino", "onnx")
OV_PRECISIONS = ("fp32", "bf16", "fp16", "int8")
POLARITIES = ("auto", "photo", "dataset")
PROCESSES_FROM = 500  # `predict` prepares images in worker processes from this many files on


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
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {first[:300]} (set FMNIST_EDGE_DEBUG=1 for the traceback)"
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
                   f"fitted to them [default: {TrainConfig.time_budget_min:g} for our models, none for the seeds']; 0 = no limit.")
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
def train(arch, no_augment, quick, **opts):
    """Train a CNN on Fashion-MNIST and save .keras, .h5, SavedModel and reports."""
    from .train.config import make_config
    from .train.trainer import train as run

    cfg = make_config(arch, quick=quick, augment=False if no_augment else None, **opts)
    run(cfg, log=click.echo)


@cli.command()
@click.argument("folder", type=click.Path(), default="artifacts")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder with the Fashion-MNIST files.")
@click.option("--test-limit", type=click.IntRange(min=10), default=None, help="Evaluate on the first N test images only.")
def evaluate(folder, data_dir, test_limit):
    """Re-create FOLDER/report/ from the saved model."""
    from .train.report import evaluate_artifacts

    evaluate_artifacts(folder, data_dir=data_dir, test_limit=test_limit, log=click.echo)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models(as_json):
    """List the registered architectures with parameter counts and sources."""
    from .train.models import create_model, get_entry, list_models, macs

    rows = []
    for name in list_models():
        m = create_model(name)
        e = get_entry(name)
        rows.append({"name": name, "params": int(m.count_params()), "macs": macs(m), "source": e.source, "summary": e.summary})
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
@click.option("--format", "formats", default="openvino,onnx", show_default=True, callback=_names(FORMATS), help="Comma-separated formats.")
@click.option("--precision", "precisions", default="fp32,fp16,int8", show_default=True,
              callback=_names(OV_PRECISIONS), help="Comma-separated OpenVINO precisions (bf16: the fp32 IR computed in bf16).")
@click.option("--opset", type=int, default=None, help="ONNX opset [default: 17].")
@click.option("--calib-size", type=click.IntRange(min=1), default=300, show_default=True, help="INT8 calibration images from the training split.")
@click.option("--check", default="1000", show_default=True, help="Test images each artifact is checked on, or 'all'.")
@click.option("--max-drop", type=click.FloatRange(0, 1), default=0.01, show_default=True, help="Largest INT8 accuracy drop allowed (absolute).")
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
@click.option("--precision", "precisions", default="fp32,bf16,fp16,int8", show_default=True,
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
def bench(folder, out, json_path, csv_path, plot_path, min_acc, soak, soak_threads, no_cold_start, no_photos, **opts):
    """Benchmark every backend on FOLDER's artifacts against the TensorFlow baseline."""
    from pathlib import Path

    from .benchmarks import bench as B
    from .benchmarks import report

    cfg = B.BenchConfig(folder=folder, min_acc=min_acc, cold_start=not no_cold_start, photos=not no_photos, **opts).validate()
    out = Path(out or Path(folder) / "bench")
    labels = B.stages(cfg) + ([f"soak x{soak}"] if soak else [])
    with click.progressbar(length=len(labels), label="benchmarking", file=sys.stderr, show_eta=False,
                           item_show_func=lambda s: s) as bar:
        seen = []

        def progress(label):
            if seen:
                bar.update(1)
            seen.append(label)
            bar.update(0, label)

        result = B.run(cfg, progress=progress)
        if soak:
            from .benchmarks.soak import soak as run_soak
            from .data import load

            progress(f"soak x{soak}")
            result["soak"] = run_soak(folder, soak, load(cfg.data_dir).x_test[:1000], threads=soak_threads)
        bar.update(1)
    click.echo(report.table(result))
    if result.get("photos"):
        from .benchmarks.photopath import table as photo_table

        click.echo("\n" + photo_table(result["photos"]))
    if soak:
        s = result["soak"]
        click.echo(f"soak: {s['predictions']} predictions from {s['threads']} threads in {s['wall_s']:.1f} s, "
                   f"RSS {s['rss_start_mb']:.0f} -> {s['rss_end_mb']:.0f} MB (max {s['rss_max_mb']:.0f}), "
                   f"{s['mismatches']} mismatches vs one thread")
    written = report.save(result, json_path or out / "bench.json", csv_path or out / "bench.csv", plot_path or out / "bench.png")
    click.echo("results: " + ", ".join(map(str, written)))
    if min_acc is not None:
        low = [f"{r['backend']}/{r['precision']} {r['accuracy']:.4f}" for r in result["results"]
               if r["accuracy"] is not None and r["accuracy"] < min_acc]
        if low:
            raise click.ClickException(f"accuracy below --min-acc {min_acc}: {', '.join(sorted(set(low)))}")
    if result["errors"]:
        raise click.ClickException("; ".join(f"{e['backend']}/{e['precision']}: {e['error']}" for e in result["errors"]))


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--model", "model_dir", type=click.Path(), default="artifacts", show_default=True, help="Artifact folder from `fmnist-edge convert`.")
@click.option("--precision", type=click.Choice(("auto", *OV_PRECISIONS)), default="auto", show_default=True,
              help="auto: the fastest precision on this CPU of those `convert` verified, timed at load.")
@click.option("--device", default="CPU", show_default=True, help="OpenVINO device (see `fmnist-edge info`).")
@click.option("--top-k", type=click.IntRange(1, 10), default=3, show_default=True, help="Classes to show per image.")
@click.option("--polarity", type=click.Choice(POLARITIES), default="auto", show_default=True,
              help="photo: dark garment on light background; dataset: bright garment on black.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image (JSON Lines).")
def predict(images, model_dir, precision, device, top_k, polarity, as_json):
    """Classify IMAGES (PNG, JPEG, BMP, WebP files; a folder stands for the images in it), one line each."""
    from pathlib import Path

    from .runtime import Classifier, list_images

    files = []
    for arg in images:
        if Path(arg).is_dir():
            found = list_images(arg)
            if not found:
                raise click.BadParameter(f"folder {arg} holds no .png, .jpg, .jpeg, .bmp or .webp files", param_hint="IMAGES")
            files.extend(found)
        else:
            files.append(Path(arg))
    clf = Classifier.load(model_dir, precision=precision, device=device, polarity=polarity)
    failed = 0
    # decoded and preprocessed on every core, classified in batches, printed in input order as they finish;
    # worker processes (free of the GIL, ~0.5 s to start) once there are enough files to pay for them
    from .host import usable_cores

    cores = usable_cores()
    processes = cores if cores > 1 and len(files) >= PROCESSES_FROM else 0
    for path, p in zip(files, clf.predict_iter(files, top_k=top_k, errors="return", processes=processes)):
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
        raise click.ClickException(f"{failed} of {len(files)} images could not be classified")


@cli.command()
@click.option("--model", "model_dir", type=click.Path(), default="artifacts", show_default=True, help="Artifact folder from `fmnist-edge convert`.")
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
def serve(model_dir, precision, device, host, port, max_upload_mb, threads, repository):
    """Serve the kiosk page, its JSON API (POST /predict, GET /health), the Open Inference Protocol (/v2) and
    Prometheus metrics (/metrics) over one loaded model or a hot-reloaded model repository."""
    from .serve import serve as run

    run(model_dir, precision=precision, device=device, host=host, port=port,
        max_upload_bytes=int(max_upload_mb * 2**20), threads=threads, log=click.echo, repository=repository)


@cli.command()
@click.argument("artifacts", type=click.Path(), default="artifacts")
@click.argument("repository", type=click.Path(file_okay=False))
@click.option("--precision", type=click.Choice(("fp32", "fp16", "int8")), default="fp32", show_default=True,
              help="Which converted IR becomes the new version.")
def publish(artifacts, repository, precision):
    """Add ARTIFACTS' verified model to REPOSITORY as its next version (REPOSITORY/fmnist/<N>/, written under a
    hidden name and renamed into place: a server watching the repository swaps it in)."""
    from .convert.serving import publish as run

    folder = run(artifacts, repository, precision)
    click.echo(f"published {artifacts} ({precision}) as {folder}")


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
