"""`compare --ray`: each network of the comparison as a Ray Tune trial, its results and artifact folder in durable storage.

A trial is `studies.compare.run_one` for one architecture with `cpus_per_trial` CPUs, TensorFlow's and OpenVINO's
thread counts set to match. It works in a folder of its own on its node (the artifact folder ARCH/ and, while it
trains, the resume state beside it) and hands that folder to Tune as a checkpoint after each training epoch and
each stage, so a restarted trial (its node died, or the driver was killed and `--resume`
goes on) starts from the stages already done and the last whole epoch. The driver needs no disk shared with the
workers: it copies each finished trial's artifact folder from the storage into OUT/ARCH and builds the same table
as a local `compare`.
Latencies measured on different nodes do not compare: each row names its node and CPU, and `compare --rebench`
without `--ray` measures every network again on one machine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from ..errors import ClusterError, ConfigError, check_int
from ..studies import compare as C
from . import filesystem, root_cause

EXPERIMENT = "compare"  # the Tune experiment's folder under --storage
# A driver killed between deleting a trial's older checkpoint and saving the experiment's state (every 10 s by
# default) leaves a state that names a deleted checkpoint, and `--resume` cannot restore that trial (measured: a
# driver SIGKILLed as a tiny trial finished). So the state is saved every STATE_PERIOD_S and each trial keeps its
# KEEP_CHECKPOINTS newest: the one the state names is among them unless a trial checkpoints that many times in
# STATE_PERIOD_S.
STATE_PERIOD_S = 2
KEEP_CHECKPOINTS = 3


def _pin_threads(cpus: int) -> None:
    """TensorFlow's thread pools sized to the trial's CPUs, before anything runs on them (a fresh worker)."""
    import os

    os.environ["OMP_NUM_THREADS"] = str(cpus)
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, cpus))
    except RuntimeError:  # already initialized in this worker (a reused actor): the first trial's setting holds
        pass


def _trial(config: dict) -> None:
    """One network's train, convert and bench in a Tune trial; the folder is checkpointed after each training epoch
    and each stage. config: "arch", "cpus", "compare" (CompareConfig's fields) and, in a sweep, "recipe" (training
    options). Every report carries `val_accuracy` (a scheduler's and a search's metric): an epoch's report its
    epoch's (with `epoch`, the scheduler's clock), a stage's the run's best; the last report adds test `accuracy`."""
    import tempfile

    import ray
    from ray import tune

    from ..artifact import read_history, read_metadata

    arch, cpus = config["arch"], config["cpus"]
    _pin_threads(cpus)
    cfg = C.CompareConfig(**{**config["compare"], "archs": (arch,), "resume": True, "threads": cpus})
    work = Path(tempfile.mkdtemp(prefix="fmnist-edge-trial-"))  # ARCH/ and, while training, its resume state
    folder = work / arch
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a restarted trial: the stages and the epochs done before
        checkpoint.to_directory(str(work))
    node = {"node": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address(), "pid": os.getpid()}

    def report(metrics: dict) -> None:
        tune.report({**metrics, **node}, checkpoint=tune.Checkpoint.from_directory(str(work)))

    def stage_done(stage: str) -> None:
        if stage != "bench":  # the last stage's folder goes with the row, below
            report({"stage": stage, "accuracy": read_metadata(folder).test_accuracy,
                    "val_accuracy": read_history(folder).best_val_accuracy})

    def epoch_done(epoch: int, logs: dict) -> None:
        report({"stage": "train", "epoch": epoch, "accuracy": None, "val_accuracy": float(logs.get("val_accuracy", 0.0))})

    row = C.run_one(arch, folder, cfg, log=lambda line: print(line, flush=True), on_stage=stage_done,
                    recipe=config.get("recipe"), on_epoch=epoch_done)
    report({"stage": "done", "accuracy": row["accuracy"], "val_accuracy": read_history(folder).best_val_accuracy,
            "row": json.dumps(row)})


def artifact_folder(checkpoint, arch: str, folder: Path) -> None:
    """A finished trial's artifact folder, from its checkpoint in the storage, to `folder` (replaced)."""
    import tempfile

    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fmnist-edge-checkpoint-", dir=folder.parent) as tmp:
        checkpoint.to_directory(tmp)
        shutil.move(str(Path(tmp) / arch), str(folder))


def _progress(log: Callable[[str], None]):
    """A Tune callback that turns trial events into compare's progress lines."""
    from ray import tune

    class Progress(tune.Callback):
        # Every report carries a checkpoint: its line is written once Tune has taken the checkpoint in (a trial that
        # fails after its line goes on from there), not when the result arrives, which is before.
        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            result = trial.last_result
            what = f"epoch {result['epoch']} checkpointed" if result.get("epoch") else f"{result.get('stage')} done"
            log(f"{_label(trial)}: {what} on node {result.get('node_ip')}")

        def on_trial_error(self, iteration, trials, trial, **info):
            log(f"{_label(trial)}: trial failed ({trial.error_file or 'see the storage'})")

    def _label(trial) -> str:  # a sweep runs an arch several times: its trial id tells them apart
        return f"{trial.config['arch']}" + (f" ({trial.trial_id})" if "recipe" in trial.config else "")

    return Progress()


def fit(ray, path: str, space: dict, *, cpus_per_trial: int, resume: bool, log: Callable[[str], None],
        same: Callable[[object], bool], differs: str, tune_config=None):
    """A new Tune run of `_trial` over `space` in `path` (storage/experiment), or with `resume` the one there
    (finished trials kept, unfinished and failed ones going on from their last checkpoint) -> its ResultGrid.
    `same(stored results)` says whether a stored run is the one asked for; `differs` is the advice when not."""
    from ray import tune

    storage, name = path.rsplit("/", 1)
    fs, storage = filesystem(storage)  # an s3:// storage: one that the workers reach without the driver's variables
    where = f"{storage}/{name}"  # `path` in `fs` (messages name `path`, as the user gave it)
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(STATE_PERIOD_S))  # read when the run starts, below
    trainable = tune.with_resources(_trial, {"cpu": cpus_per_trial})
    if tune.Tuner.can_restore(where, storage_filesystem=fs):
        if not resume:
            raise ConfigError(f"{path} holds a {name} run already: --resume goes on with it, or choose another --storage")
        tuner = tune.Tuner.restore(where, trainable, resume_unfinished=True, resume_errored=True,
                                   storage_filesystem=fs)
        if not same(tuner.get_results()):
            raise ConfigError(f"{path} holds another {name} run: {differs}")
        log(f"going on with {path}: finished trials are kept")
    else:
        tuner = tune.Tuner(
            trainable, param_space=space, tune_config=tune_config or tune.TuneConfig(reuse_actors=False),
            run_config=tune.RunConfig(name=name, storage_path=storage, storage_filesystem=fs, verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=2),
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
                                      callbacks=[_progress(log)]),
        )
    log(f"trials on Ray, {cpus_per_trial} CPU each, results in {path}")
    try:
        return tuner.fit()
    except ray.exceptions.RayError as exc:
        raise ClusterError(f"the Ray Tune run in {path} failed: {root_cause(exc)}") from None


def run(cfg: C.CompareConfig, *, address: str = "local", cpus_per_trial: int = 1, storage: str | None = None,
        resume: bool = False, log: Callable[[str], None] = print) -> dict:
    """Every network of `cfg` as a Tune trial on the Ray cluster at `address` -> compare's result (`C.save` writes
    it), each row with the node that ran it. Trial results and folders go to `storage` (default OUT/ray); with
    `resume`, an interrupted run there goes on and its finished trials are not run again."""
    from . import connect

    check_int("--cpus-per-trial", cpus_per_trial)
    if cfg.rebench or cfg.rounds > 1:
        raise ConfigError("--rebench and --rounds measure every network on one machine; run them without --ray, "
                          "after the trials")
    archs, out = cfg.architectures, Path(cfg.out)
    storage = storage or str(out / "ray")
    storage = storage if "://" in storage else str(Path(storage).resolve())
    path = f"{storage.rstrip('/')}/{EXPERIMENT}"
    with connect(address) as ray:
        from ray import tune

        compare = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in ("archs", "out")}
        space = {"arch": tune.grid_search(list(archs)), "cpus": cpus_per_trial, "compare": compare}
        results = fit(ray, path, space, cpus_per_trial=cpus_per_trial, resume=resume, log=log,
                      same=lambda stored: {r.config["arch"] for r in stored} == set(archs),
                      differs=f"give the same --arch ({', '.join(archs)}) to --resume, or another --storage")
        failed = [f"{r.config['arch']}: {root_cause(r.error)}" for r in results if r.error is not None]
        if failed:
            raise ClusterError(f"{len(failed)} of {len(archs)} trials failed ({'; '.join(failed)}); "
                               f"`--resume` runs them again from their last stage")
        by_arch = {r.config["arch"]: r for r in results}
        rows = []
        for arch in archs:
            r = by_arch[arch]
            artifact_folder(r.checkpoint, arch, out / arch)
            rows.append({**json.loads(r.metrics["row"]), "node": r.metrics["node"], "node_ip": r.metrics["node_ip"]})
    result = C.finish(cfg, archs, rows, log)
    result["ray"] = {"address": address, "storage": path, "cpus_per_trial": cpus_per_trial}
    return result
