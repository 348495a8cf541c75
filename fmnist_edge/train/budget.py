"""The learning-rate schedule, and the wall-clock budget that fits it into a time limit.

A cosine schedule that is cut short ends at a high learning rate, the worst time to stop. So under a budget
the trainer re-plans after every epoch: from the epochs' measured times it works out how many epochs still fit,
and moves the cosine's end there; the schedule always anneals to its floor in the last planned epoch. A slower or
busier CPU runs fewer epochs instead of running late.
"""

from __future__ import annotations

import functools
import math
import time

from ..quiet import keras as _keras
from ..quiet import tensorflow as _tf

ALPHA = 0.01  # the cosine's floor, as a fraction of the peak learning rate


def plan_epochs(done: int, elapsed_s: float, epoch_times: list[float], budget_s: float, max_epochs: int) -> int:
    """How many epochs the run should have in all, given `done` epochs in `elapsed_s` seconds.

    An epoch is expected to take the mean of the epochs measured after the first (the first also traces and
    compiles), and the plan keeps half an epoch in hand so that one slow epoch at the end does not run late.
    Never fewer than `done` (then the run stops), never more than `max_epochs`.
    """
    if not epoch_times:
        return max_epochs
    steady = epoch_times[1:] or epoch_times
    per_epoch = sum(steady) / len(steady)
    fit = math.floor((budget_s - elapsed_s - 0.5 * per_epoch) / per_epoch)
    return max(done, min(max_epochs, done + fit))


@functools.cache
def _classes():
    """The Keras classes, defined on first use: importing this module does not import TensorFlow."""
    keras, tf = _keras(), _tf()

    class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
        """Linear warm-up from peak/10 to `peak` over `warmup_steps`, then cosine decay to ALPHA * peak at
        `total_steps`: Keras' CosineDecay with warm-up, except that the end is a variable the budget moves."""

        def __init__(self, peak: float, warmup_steps: int, total_steps: int):
            self.peak, self.warmup_steps = float(peak), int(warmup_steps)
            self.total_steps = tf.Variable(float(total_steps), trainable=False, dtype=tf.float32, name="planned_steps")

        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            start = self.peak / 10 if self.warmup_steps else self.peak
            warm = start + (self.peak - start) * step / max(self.warmup_steps, 1)
            progress = tf.minimum((step - self.warmup_steps) / tf.maximum(self.total_steps - self.warmup_steps, 1.0), 1.0)
            cosine = self.peak * ((1 - ALPHA) * 0.5 * (1 + tf.cos(math.pi * progress)) + ALPHA)
            return tf.where(step < self.warmup_steps, warm, cosine)

        def get_config(self):
            return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": float(self.total_steps.numpy())}

    class TimeBudget(keras.callbacks.Callback):
        """Stops training within `budget_s` seconds, re-planning the schedule's end (`schedule.total_steps`, if
        there is a schedule) after every epoch. The clock starts at `started` (a time.perf_counter() value: the
        command's start, so that loading and building count) or else at the first epoch's start, and
        `reserve_s` of the budget is kept for the work after training (saving, the report). `planned` and
        `stopped` tell the outcome."""

        def __init__(self, budget_s: float, max_epochs: int, steps_per_epoch: int, schedule=None, log=print,
                     started: float | None = None, reserve_s: float = 0.0):
            super().__init__()
            self.budget_s, self.max_epochs, self.steps_per_epoch = budget_s, max_epochs, steps_per_epoch
            self.schedule, self.log = schedule, log
            self.given_start, self.reserve_s = started, reserve_s
            self.planned, self.stopped, self.epoch_times = max_epochs, False, []

        def on_train_begin(self, logs=None):
            self.last = time.perf_counter()
            self.started = self.last if self.given_start is None else self.given_start

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            self.epoch_times.append(now - self.last)
            self.last = now
            done = epoch + 1
            planned = plan_epochs(done, now - self.started, self.epoch_times, self.budget_s - self.reserve_s, self.max_epochs)
            if planned != self.planned:
                per_epoch = (sum(self.epoch_times[1:]) / (done - 1)) if done > 1 else self.epoch_times[0]
                self.log(f"time budget {self.budget_s / 60:g} min: {planned} of {self.max_epochs} epochs fit "
                         f"(~{per_epoch:.0f} s each); the learning-rate schedule ends there")
                self.planned = planned
                if self.schedule is not None:
                    self.schedule.total_steps.assign(float(planned * self.steps_per_epoch))
            if done >= self.planned and done < self.max_epochs:
                self.stopped = True
                self.model.stop_training = True

    return WarmupCosine, TimeBudget


def warmup_cosine(peak: float, warmup_steps: int, total_steps: int):
    return _classes()[0](peak, warmup_steps, total_steps)


def time_budget(budget_s: float, max_epochs: int, steps_per_epoch: int, schedule=None, log=print,
                started: float | None = None, reserve_s: float = 0.0):
    return _classes()[1](budget_s, max_epochs, steps_per_epoch, schedule, log, started, reserve_s)
