"""Fault campaign: SIGKILL the real commands at random moments, many times, and check what each kill left.

    python -m fmnist_edge.harness.kills [ARTIFACTS] [--writer N] [--convert N] [--train N] [--publish N] [--serve N]

ARTIFACTS: a converted artifact folder (default: artifacts). Each round starts the command, kills it at a
moment drawn uniformly over its uninterrupted run time, then checks: the folder holds the previous complete
set or the new complete set (every IR loads and verifies against manifest.json; the Keras model loads), and
the next uninterrupted run succeeds and leaves no staging folder behind. Writes benchmarks/results/faults.json
and prints one line per kind; exits 1 if any round lost or mixed anything. (tests/test_faults.py kills at each
named commit point; this samples the moments in between.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from ..artifact import Layout, read_manifest, read_metadata
from ..benchmarks.machine import machine
from .load import serving_version, start_server, stop_server

CLI = [sys.executable, "-m", "fmnist_edge.cli"]
# A writer with no TensorFlow: 20 files of `tag` into a folder through atomic_dir (its commit is what train and
# convert use), slowly enough that a random kill lands anywhere. argv: folder tag exchange|renames delay_s
WRITER = """
import sys, time
from fmnist_edge import atomic
atomic.EXCHANGE = sys.argv[3] == "exchange"
with atomic.atomic_dir(sys.argv[1]) as stage:
    for i in range(20):
        (stage / f"f{i:02d}").write_text(sys.argv[2] * 500)
        time.sleep(float(sys.argv[4]))
"""


def tag_of(folder: Path) -> str:
    """'X' when `folder` holds exactly the 20 files WRITER writes with tag X; ValueError on a mix or a part."""
    names = sorted(p.name for p in folder.iterdir())
    if names != [f"f{i:02d}" for i in range(20)]:
        raise ValueError(f"{folder} holds {names}, not the 20 files of one write")
    tags = {p.read_text() for p in folder.iterdir()}
    if len(tags) != 1:
        raise ValueError(f"{folder} holds files of two writes")
    text = tags.pop()
    if text != text[0] * 500:
        raise ValueError(f"{folder} holds a part of a file")
    return text[0]


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.parent.iterdir() if p.name.startswith((f".{folder.name}.tmp-", f".{folder.name}.old-"))]


def _timed(cmd) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def _kill_at_random(cmd, seconds: float, rng: random.Random) -> str:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(rng.uniform(0, seconds))
        return "finished before the kill"
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return "killed"


def _writer_state(folder: Path, state) -> str:
    if not folder.exists():  # killed between the two renames of the fallback commit
        if not _leftovers(folder):
            raise FileNotFoundError(f"{folder} is gone and nothing is left to restore it from")
        return "moved aside, restored by the next writer"
    state(folder)  # exactly the files of one write
    return "one complete write"


def _ir_set(folder: Path) -> tuple:
    """The precisions listed in manifest.json, each loaded and verified by the runtime."""
    from fmnist_edge.runtime import Classifier

    precisions = tuple(sorted(a.precision for a in read_manifest(folder).artifacts if a.format == "openvino"))
    for p in precisions:
        Classifier.load(folder, precision=p)
    return precisions


def _keras_ok(folder: Path) -> str:
    from fmnist_edge.train.modelio import load_keras

    load_keras(Layout(folder).keras)
    return read_metadata(folder).config["limit"]


def campaign(name, rounds, setup, cmd, check, rng, log) -> dict:
    """`rounds` random kills of `cmd` on the folder `setup()` makes; `check(folder)` names the state it finds."""
    work = Path(tempfile.mkdtemp(prefix=f"fmnist-faults-{name}-"))
    try:
        folder = setup(work)
        seconds = _timed(cmd(folder))
        outcomes, lost = Counter(), []
        for i in range(rounds):
            how = _kill_at_random(cmd(folder), seconds, rng)
            try:
                outcomes[f"{how}: {check(folder)}"] += 1
            except Exception as exc:  # noqa: BLE001 - anything unreadable is a finding
                lost.append(f"round {i} ({how}): {type(exc).__name__}: {exc}")
        done = subprocess.run(cmd(folder), capture_output=True, text=True)
        clean = done.returncode == 0 and not _leftovers(folder)
        row = {"kind": name, "rounds": rounds, "run_s": round(seconds, 1), "outcomes": dict(outcomes), "lost": lost,
               "next_run_ok_and_clean": clean}
        log(f"{name:<8} {rounds:>4} kills over a {seconds:.1f} s run: {dict(outcomes)}; lost or mixed: {len(lost)}; "
            f"next run ok and swept: {clean}")
        return row
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", nargs="?", default="artifacts")
    for kind, n in (("writer", 300), ("convert", 20), ("train", 10), ("publish", 40), ("serve", 10)):
        ap.add_argument(f"--{kind}", type=int, default=n, help=f"rounds (default {n})")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng, src = random.Random(args.seed), Path(args.artifacts).resolve()
    rows = []

    if args.writer:

        tags = iter("abcdefghijklmnopqrstuvwxyz" * 1000)
        rows.append(campaign("writer", args.writer, lambda w: w / "out",
                             lambda f: [sys.executable, "-c", WRITER, str(f), next(tags), rng.choice(("exchange", "renames")), "0.002"],
                             lambda f: _writer_state(f, tag_of), rng, print))
    if args.convert:
        rows.append(campaign("convert", args.convert, lambda w: Path(shutil.copytree(src, w / "artifacts")),
                             lambda f: [*CLI, "convert", str(f), "--format", "openvino", "--precision", rng.choice(("fp32", "fp32,int8")),
                                        "--check", "200", "--calib-size", "100"],
                             lambda f: f"verified set {_ir_set(f)}", rng, print))
    if args.train:
        rows.append(campaign("train", args.train, lambda w: Path(shutil.copytree(src, w / "artifacts")),
                             lambda f: [*CLI, "train", "--arch", "tiny", "--limit", str(rng.choice((600, 900))), "--test-limit", "200",
                                        "--epochs", "1", "--out", str(f)],
                             lambda f: f"model loads (limit {_keras_ok(f)})", rng, print))
    if args.publish:
        def every_version_verifies(repo):
            names = sorted(p.name for p in (repo / "fmnist").iterdir() if p.name.isdigit())
            for v in names:
                _ir_set(repo / "fmnist" / v)
            return "every numbered version verifies"

        rows.append(campaign("publish", args.publish, lambda w: w / "repo",
                             lambda f: [*CLI, "publish", str(src), str(f)], every_version_verifies, rng, print))
    if args.serve:
        rows.append(_serve_campaign(src, args.serve, rng))
    result = {"machine": machine(), "seed": args.seed, "rows": rows}
    out = Path(__file__).with_name("results") / "faults.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    bad = sum(len(r["lost"]) + (not r["next_run_ok_and_clean"]) for r in rows)
    print(f"rounds {sum(r['rounds'] for r in rows)}, findings {bad}; results: {out}")
    return 1 if bad else 0


def _serve_campaign(src: Path, rounds: int, rng: random.Random) -> dict:
    """Kill a serving process at a random moment of a hot reload; a restart must serve the newest version."""
    from fmnist_edge.convert.serving import publish

    work = Path(tempfile.mkdtemp(prefix="fmnist-faults-serve-"))
    outcomes, lost = Counter(), []
    try:
        repo = work / "repo"
        publish(src, repo)
        for i in range(rounds):
            proc, _ = start_server("--repository", repo)
            newest = publish(src, repo).name
            time.sleep(rng.uniform(0, 1.5))  # the poll (1 s) and the load happen in here
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc, port = start_server("--repository", repo)
            try:
                serving = serving_version(port)
                outcomes["restart serves the newest version" if serving == newest else f"serves {serving}"] += 1
                if serving != newest:
                    lost.append(f"round {i}: serves {serving}, newest {newest}")
            finally:
                stop_server(proc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"serve    {rounds:>4} kills during a hot reload: {dict(outcomes)}; lost: {len(lost)}")
    return {"kind": "serve", "rounds": rounds, "outcomes": dict(outcomes), "lost": lost, "next_run_ok_and_clean": not lost}


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
