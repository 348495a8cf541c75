"""Faults: processes killed at every commit point and at random moments, a full disk, two writers at once,
read-only model folders. After each: the previous artifacts load and verify, and the next run cleans up."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fmnist_edge import atomic, faults
from fmnist_edge.contract import CLASS_NAMES
from fmnist_edge.errors import ArtifactError
from fmnist_edge.harness import kills

pytestmark = pytest.mark.faults

CLI = [sys.executable, "-m", "fmnist_edge.cli"]

def _write(folder: Path, tag: str, mode: str = "exchange", delay: float = 0.0, kill_at: str | None = None):
    env = {**os.environ, faults.ENV: kill_at} if kill_at else None
    return subprocess.Popen([sys.executable, "-c", kills.WRITER, str(folder), tag, mode, str(delay)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith((f".{name}.tmp-", f".{name}.old-")))


@pytest.mark.parametrize("mode,point", [("exchange", "atomic-dir-staged"), ("exchange", "atomic-dir-swapped"),
                                        ("renames", "atomic-dir-staged"), ("renames", "atomic-dir-half-renamed")])
def test_a_writer_killed_at_each_commit_point_loses_nothing(tmp_path, mode, point):
    out = tmp_path / "out"
    assert _write(out, "a", mode).wait() == 0 and kills.tag_of(out) == "a"
    proc = _write(out, "b", mode, kill_at=point)
    assert proc.wait() == -signal.SIGKILL
    assert _leftovers(tmp_path, "out"), "the kill left nothing to clean: it did not land inside the commit"
    if point == "atomic-dir-half-renamed":  # the one window where the folder is missing until the next writer
        assert not out.exists()
    else:
        assert kills.tag_of(out) == ("b" if point == "atomic-dir-swapped" else "a")
    assert _write(out, "c", mode).wait() == 0
    assert kills.tag_of(out) == "c" and _leftovers(tmp_path, "out") == []


def test_writers_killed_at_random_moments_leave_the_old_folder_or_the_new_one(tmp_path):
    out = tmp_path / "out"
    assert _write(out, "a").wait() == 0
    rng, seen = random.Random(0), ["a"]
    for tag in "bcdefghi":
        mode = rng.choice(("exchange", "renames"))
        proc = _write(out, tag, mode, delay=0.01)
        time.sleep(rng.uniform(0.05, 0.6))  # python start-up, then 20 files in ~0.2 s, then the commit
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists():
            assert kills.tag_of(out) in (seen[-1], tag)  # what was there, or the whole new write
            seen.append(kills.tag_of(out))
        else:  # killed between the two renames of the fallback commit: the next writer puts the old one back
            assert mode == "renames" and _write(out, tag, mode, kill_at="atomic-dir-staged").wait() == -signal.SIGKILL
            assert kills.tag_of(out) == seen[-1]
    assert _write(out, "z").wait() == 0 and kills.tag_of(out) == "z" and _leftovers(tmp_path, "out") == []
    assert len(set(seen)) > 2, f"the kills did not land both before and after commits: {seen}"


def test_a_second_writer_of_the_same_folder_is_refused_in_one_line(tmp_path):
    out = tmp_path / "out"
    with atomic.atomic_dir(out):
        proc = _write(out, "b")
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert f"{out} is being written by fmnist-edge (pid {os.getpid()}" in output
    assert list(out.iterdir()) == []  # what the holder wrote (nothing), not a file of the refused writer


def test_a_lock_held_by_a_killed_writer_does_not_block_the_next(tmp_path):
    out = tmp_path / "out"
    assert _write(out, "a", kill_at="atomic-dir-staged").wait() == -signal.SIGKILL
    with atomic.atomic_dir(out) as stage:
        (stage / "x").write_text("x")
    assert (out / "x").read_text() == "x"


def test_a_killed_atomic_file_write_is_swept_by_the_next(tmp_path):
    target = tmp_path / "result.json"
    code = f"from fmnist_edge import atomic; import os, signal\nwith atomic.atomic_file({str(target)!r}) as t:\n" \
           "    t.write_text('half'); os.kill(os.getpid(), signal.SIGKILL)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == -signal.SIGKILL
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".result.json.tmp-")]
    atomic.write_json(target, {"ok": 1})
    assert json.loads(target.read_text()) == {"ok": 1} and [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_interrupted_write_keeps_the_old_folder(tmp_path):
    out = tmp_path / "artifacts"
    out.mkdir()
    (out / "metadata.json").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_dir(out) as stage:
            (stage / "metadata.json").write_text("half")
            raise KeyboardInterrupt
    assert (out / "metadata.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".artifacts.lock", "artifacts"]  # the lock stays, empty of meaning


def test_atomic_dir_replaces_whole(tmp_path):
    out = tmp_path / "a"
    out.mkdir()
    (out / "stale.txt").write_text("x")
    with atomic.atomic_dir(out) as stage:
        (stage / "new.txt").write_text("y")
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    with pytest.raises(ArtifactError, match="a file of that name exists"):
        with atomic.atomic_dir(out / "new.txt"):
            pass


# --------------------------------------------------------------------------- the commands themselves


def _run(*args, kill_at=None, timeout=600):
    env = {**os.environ, faults.ENV: kill_at} if kill_at else None
    return subprocess.run([*CLI, *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout)


def _verify(folder: Path, precisions=("fp32", "int8")) -> dict:
    """Every listed IR loads through the runtime, which checks sizes and sha256 against manifest.json."""
    from fmnist_edge.runtime import Classifier

    x = np.zeros((28, 28), np.uint8)
    x[6:22, 8:20] = 200
    return {p: Classifier.load(folder, precision=p).predict(x).label for p in precisions}


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


TRAIN3 = ("train", "--arch", "tiny", "--optimizer", "adam", "--limit", "600", "--test-limit", "100", "--epochs", "3")


def test_train_killed_mid_run_or_before_its_commit_keeps_the_old_folder_and_resume_goes_on_where_it_stopped(
        tiny_artifacts, tmp_path):
    import h5py

    out, resume = tmp_path / "artifacts", tmp_path / ".artifacts.resume"
    shutil.copytree(tiny_artifacts, out)
    before = _tree(out)
    # killed right after epoch 1's state is written: the old folder stands, the state is beside it
    killed = _run(*TRAIN3, "--out", out, kill_at="train-epoch-saved")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert _tree(out) == before and _leftovers(tmp_path, "artifacts")
    state = json.loads((resume / "state.json").read_text())
    assert state["epoch"] == 1 and not state["finished"]
    assert set(state["counters"]) == {"early", "plateau", "budget"}  # what early stopping, Adam's plateau schedule
    # and the time budget had counted comes back with the weights
    other = _run(*TRAIN3, "--batch-size", "32", "--out", out, "--resume")
    assert other.returncode == 1 and other.stderr.count("\n") == 1, other.stderr
    assert "batch_size 64 there, 32 now" in other.stderr and "drop --resume" in other.stderr

    done = _run(*TRAIN3, "--out", out, "--resume")
    assert done.returncode == 0, done.stderr
    assert "going on after epoch 1 of 3" in done.stdout and "Epoch 1/3" not in done.stdout + done.stderr
    meta = json.loads((out / "metadata.json").read_text())
    history = json.loads((out / "history.json").read_text())
    assert meta["epochs_run"] == 3 and meta["resumed_at_epoch"] == 1 and meta["data"]["test"] == 100
    assert len(history["loss"]) == 3 and history["loss"][0] == state["history"]["loss"][0]  # epoch 1 not run again
    assert (out / "history.csv").read_text().count("\n") == 4
    with h5py.File(out / "checkpoints" / "best.weights.h5") as f:  # Adam's step count: 10 steps an epoch, 3 epochs
        assert int(f["optimizer"]["vars"]["0"][()]) == 30
    assert not resume.exists() and _leftovers(tmp_path, "artifacts") == []

    # killed after training, before its commit: the folder stands; --resume writes the run without training again
    before = _tree(out)
    assert _run(*TRAIN3, "--out", out, kill_at="atomic-dir-staged").returncode == -signal.SIGKILL
    assert _tree(out) == before and json.loads((resume / "state.json").read_text())["finished"]
    done = _run(*TRAIN3, "--out", out, "--resume")
    assert done.returncode == 0, done.stderr
    assert "training had finished (3 epochs)" in done.stdout and "Epoch " not in done.stdout + done.stderr
    assert json.loads((out / "metadata.json").read_text())["epochs_run"] == 3
    assert not resume.exists() and _leftovers(tmp_path, "artifacts") == []


@pytest.mark.slow
def test_ctrl_c_ends_training_after_the_epoch_with_its_state_kept_and_one_line(tmp_path):
    out = tmp_path / "artifacts"
    args = [*CLI, "train", "--arch", "tiny", "--limit", "600", "--test-limit", "100", "--epochs", "50", "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("Epoch 2/"):
            proc.send_signal(signal.SIGINT)
            break
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1 and stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    state = json.loads((tmp_path / ".artifacts.resume" / "state.json").read_text())
    assert f"training interrupted: the state after epoch {state['epoch']} is in" in stderr and "--resume" in stderr
    assert 2 <= state["epoch"] < 50 and not state["finished"] and not out.exists()  # to go on from, not finished


def test_a_run_without_resume_names_the_interrupted_state_it_replaces(tmp_path):
    from fmnist_edge.train import resume

    out = tmp_path / "artifacts"
    assert resume.found(out) is None
    resume.folder_for(out).mkdir()
    (resume.folder_for(out) / resume.STATE).write_text(json.dumps({"epoch": 7}))
    assert resume.found(out).endswith("holds an interrupted run (7 epochs done); --resume would go on from it")


def test_convert_killed_mid_run_or_at_its_commit_keeps_a_set_that_verifies_and_a_second_writer_is_refused(converted, tmp_path):
    out = tmp_path / "artifacts"
    shutil.copytree(converted, out)
    labels = _verify(out)
    (tmp_path / ".artifacts.tmp-stale").mkdir()  # not ours (no host-pid tag): never touched
    args = ("convert", out, "--format", "openvino", "--precision", "fp32", "--check", "100")
    # at a random moment of the conversion: after TensorFlow has loaded the model and the staging folder exists
    proc = subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if line.startswith("source:"):
            time.sleep(random.Random(1).uniform(0.0, 0.05))
            proc.send_signal(signal.SIGKILL)
            break
    assert proc.wait() == -signal.SIGKILL
    if len(_leftovers(tmp_path, "artifacts")) == 2:  # killed before its swap: the old set, all four precisions
        assert _verify(out) == labels
    else:  # a fast host finished the swap before the kill landed: the new set, whole
        assert json.loads((out / "manifest.json").read_text())["artifacts"][0]["precision"] == "fp32" and _verify(out, ("fp32",))
    killed = _run(*args, kill_at="atomic-dir-swapped")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert [a["precision"] for a in manifest["artifacts"]] == ["fp32"]  # the new set, complete
    assert _verify(out, ("fp32",)) and (out / "model.keras").is_file() and (out / "report").is_dir()
    # two at once: the first sweeps what the killed runs left; the second is refused in one line
    first = subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in first.stdout:
        if line.startswith("source:"):  # it holds the folder
            break
    first.send_signal(signal.SIGSTOP)  # held there, so the second meets the lock however fast the first would finish
    try:
        second = _run(*args, timeout=120)
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=300) == 0, first.stdout.read()
    assert second.returncode == 1
    err = second.stderr.strip().splitlines()
    assert len(err) == 1 and "is being written by fmnist-edge (pid" in err[0] and "wait for it to finish" in err[0], err
    assert _verify(out, ("fp32",)) and _leftovers(tmp_path, "artifacts") == [".artifacts.tmp-stale"]


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs mounted at tmp_path/disk (root only)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("this machine does not let us mount a tmpfs (a container without CAP_SYS_ADMIN)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)])


def test_convert_on_a_full_disk_says_so_in_one_line_and_keeps_the_old_artifacts(converted, small_disk):
    out = small_disk / "artifacts"
    shutil.copytree(converted, out, ignore=shutil.ignore_patterns("checkpoints", "report", "onnx", "model.h5"))
    before = _tree(out)
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * max(0, free - 64 * 1024))  # 64 KiB left: less than one IR
    result = _run("convert", out, "--format", "openvino", "--precision", "fp32", "--check", "100")
    err = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(err) == 1, result.stderr
    assert err[0].startswith(f"Error: cannot write {out}/") and "no space left" in err[0].lower(), err
    assert _tree(out) == before and sorted(p.name for p in small_disk.iterdir()) == [".artifacts.lock", "artifacts", "filler"]
    (small_disk / "filler").unlink()
    assert _verify(out, ("fp32",))


def test_publish_killed_before_its_rename_leaves_no_version_and_the_next_publish_cleans_up(converted, tmp_path):
    repo = tmp_path / "repo"
    assert _run("publish", converted, repo).returncode == 0
    killed = _run("publish", converted, repo, kill_at="publish-staged")
    assert killed.returncode == -signal.SIGKILL
    stale, version = sorted(p.name for p in (repo / "fmnist").iterdir())
    assert stale.startswith(".publish-") and version == "1"
    assert _run("publish", converted, repo).returncode == 0
    assert sorted(p.name for p in (repo / "fmnist").iterdir()) == ["1", "2"]


def test_a_server_killed_while_loading_a_new_version_serves_it_after_a_restart(converted, tmp_path):
    import urllib.request

    from fmnist_edge.convert.serving import publish
    from fmnist_edge.harness.load import start_server, stop_server

    repo = tmp_path / "repo"
    publish(converted, repo)
    proc, port = start_server("--repository", repo, env={**os.environ, faults.ENV: "repository-loading"})
    try:
        publish(converted, repo)  # version 2: the server dies part-way through loading it
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
    proc, port = start_server("--repository", repo)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/fmnist/ready", timeout=10) as r:
            assert r.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/fmnist", timeout=10) as r:
            assert json.loads(r.read())["versions"] == ["2"]  # the newest version that verifies
    finally:
        stop_server(proc)


@pytest.fixture
def read_only(converted, tmp_path):
    """A copy of `converted` behind a read-only bind mount (root only; otherwise chmod, which root ignores)."""
    src, ro = tmp_path / "src", tmp_path / "ro"
    shutil.copytree(converted, src)
    ro.mkdir()
    if os.geteuid() != 0:
        for p in [src, *src.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
        yield src
        return
    ok = subprocess.run(["mount", "--bind", str(src), str(ro)], capture_output=True).returncode == 0
    ok = ok and subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True).returncode == 0
    if not ok:
        pytest.skip("this machine does not let us make a read-only bind mount")
    try:
        with pytest.raises(OSError):
            (ro / "probe").write_text("x")
        yield ro
    finally:
        subprocess.run(["umount", "-l", str(ro)])


def test_predict_and_serve_work_from_a_read_only_folder(read_only, fmnist, tmp_path):
    import urllib.request

    from PIL import Image

    from fmnist_edge.harness.load import start_server, stop_server

    image = tmp_path / "shirt.png"
    Image.fromarray(fmnist.x_test[0]).save(image)
    result = _run("predict", image, "--model", read_only, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["label"] in CLASS_NAMES
    proc, port = start_server("--model", read_only)
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=image.read_bytes(),
                                     headers={"Content-Type": "image/png"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.loads(r.read())["label"] in CLASS_NAMES
    finally:
        stop_server(proc)
