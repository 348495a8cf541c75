"""Where training runs: the distribution strategy for this machine's devices (or a TF_CONFIG cluster), with its compute precision.

- One device (a CPU, or one GPU): TF's default strategy. Keras then iterates our dataset itself (see
  pipeline.pipeline_options for why not OneDeviceStrategy).
- Several GPUs: `MirroredStrategy`.
- `TF_CONFIG` set: `MultiWorkerMirroredStrategy`, for a cluster of one worker only, because Keras 3's `fit` fails
  across several (see _multi_worker).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

from ..errors import ConfigError
from ..host import cpu_flags, cpu_has_bf16, cpu_model
from ..quiet import keras as _keras
from ..quiet import quiet
from ..quiet import tensorflow as _tf


def select_strategy(device: str, precision: str = "auto"):
    """TensorFlow's own distribution: MultiWorker with TF_CONFIG, Mirrored on >1 GPU, and on one device TF's
    default strategy (no distribution layer: Keras then iterates the dataset itself; OneDeviceStrategy
    wraps it in a multi-device iterator whose tf.data autotune thread stalled every other epoch, see
    pipeline.pipeline_options).

    Returns (strategy, description, Keras dtype policy name) with `precision` resolved for that device.
    """
    tf = _tf()
    with quiet():  # CUDA's probe logs an error line on a machine without a GPU
        gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        raise ConfigError("--accelerator gpu: TensorFlow sees no GPU here; use --accelerator cpu (or auto), "
                          "or install a CUDA build of TensorFlow")
    if device == "cpu" and gpus:
        tf.config.set_visible_devices([], "GPU")
        gpus = []
    policy = dtype_policy_name(precision, bool(gpus))
    if os.environ.get("TF_CONFIG"):
        strategy = _multi_worker(tf, os.environ["TF_CONFIG"])
        desc = f"multi-worker ({strategy.num_replicas_in_sync} replicas, TF_CONFIG)"
    elif len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy()
        desc = f"{len(gpus)} GPUs (MirroredStrategy)"
    elif gpus:
        strategy = tf.distribute.get_strategy()  # TensorFlow places the model on the visible GPU
        details = tf.config.experimental.get_device_details(gpus[0])
        desc = f"GPU ({details.get('device_name', gpus[0].name)})"
    else:
        strategy = tf.distribute.get_strategy()
        onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0"
        bf16 = ", AMX" if "amx_bf16" in cpu_flags() else ", AVX512-BF16" if cpu_has_bf16() else ""
        desc = f"CPU ({cpu_model()}, {os.cpu_count()} cores, oneDNN {'on' if onednn else 'off'}{bf16})"
    return strategy, f"{desc}, {policy}", policy


def describe_strategy(strategy, precision: str = "auto") -> tuple[str, str]:
    """A strategy the caller built -> (description, Keras dtype policy name), as select_strategy gives them."""
    devices = strategy.extended.worker_devices
    policy = dtype_policy_name(precision, gpu=any("GPU" in d.upper() for d in devices))
    names = ", ".join(d.rsplit("device:", 1)[-1] for d in devices)
    return f"{type(strategy).__name__} over {names}, {policy}", policy


def _multi_worker(tf, tf_config: str):
    """MultiWorkerMirroredStrategy for a TF_CONFIG cluster of one worker; a cluster of several is refused.

    Keras 3's `fit` does not train under MultiWorkerMirroredStrategy with two or more workers (Keras 3.15.1,
    TF 2.21, tried with two local workers): it reduces a tuple of per-replica input batches across workers to
    build the model ("Attempt to convert a value (PerReplica...)", keras-team/keras#20329), and after a
    workaround for that, every step's scalar metrics with `axis=0` ("Invalid reduction dimension 0 for input
    with 0 dimensions", tensorflow/tensorflow#72388, whose workaround is Keras 2). We refuse such a cluster up
    front rather than start a run that fails, or waits on its peers, in its first step.
    """
    try:
        spec = json.loads(tf_config)
        workers = sum(len(spec["cluster"].get(job, [])) for job in ("chief", "worker"))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError('TF_CONFIG is set but is not a cluster spec; set it to {"cluster": {"worker": '
                          '["host:port"]}, "task": {"type": "worker", "index": 0}}, or unset it to train on this '
                          "machine's devices") from None
    if workers > 1:
        raise ConfigError(f"TF_CONFIG names {workers} workers: Keras 3's fit cannot train across several workers "
                          "(tensorflow/tensorflow#72388); unset TF_CONFIG and train on one machine (all its GPUs "
                          "are used, with MirroredStrategy)")
    return tf.distribute.MultiWorkerMirroredStrategy()


def dtype_policy_name(precision: str, gpu: bool) -> str:
    """--compute-dtype -> a Keras dtype policy. Mixed policies keep float32 weights and float32 softmax."""
    if precision == "auto":
        precision = "bfloat16" if not gpu and cpu_has_bf16() else "float32"
    if precision == "float16" and not gpu:
        raise ConfigError("--compute-dtype float16 needs a GPU; on a CPU use bfloat16 (AMX/AVX512-BF16 CPUs) or float32")
    if precision == "bfloat16" and not gpu and not cpu_has_bf16():
        raise ConfigError("--compute-dtype bfloat16: this CPU has no bfloat16 instructions (AMX-BF16 or AVX512-BF16), "
                          "it would run emulated and slower; use --compute-dtype float32")
    return {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}[precision]


@contextmanager
def dtype_policy(name: str):
    """Keras' global dtype policy for the layers built inside; the previous one is restored after."""
    mp = _keras().mixed_precision
    previous = mp.global_policy()
    mp.set_global_policy(name)
    try:
        yield
    finally:
        mp.set_global_policy(previous)
