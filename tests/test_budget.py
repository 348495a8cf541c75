"""The learning-rate schedule and the wall-clock budget that re-plans it."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from fmnist_edge.cli import cli
from fmnist_edge.train.budget import ALPHA, plan_epochs, warmup_cosine


@pytest.mark.parametrize("warmup", [0, 30])
def test_schedule_is_keras_cosine_decay_with_warm_up(warmup):
    from fmnist_edge.quiet import keras

    keras = keras()
    peak, total = 3e-3, 400
    ours = warmup_cosine(peak, warmup, total)
    ref = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 10 if warmup else peak, decay_steps=total - warmup, alpha=ALPHA,
        warmup_target=peak if warmup else None, warmup_steps=warmup)
    steps = [0, 1, warmup // 2, max(warmup - 1, 0), warmup, warmup + 1, 150, 399, 400, 500]
    np.testing.assert_allclose([float(ours(s)) for s in steps], [float(ref(s)) for s in steps], rtol=1e-5)


def test_moving_the_end_anneals_there():
    schedule = warmup_cosine(1.0, 10, 1000)
    assert float(schedule(400)) > 0.5
    schedule.total_steps.assign(400.0)
    assert float(schedule(400)) == pytest.approx(ALPHA)
    assert float(schedule(300)) > float(schedule(399)) > ALPHA  # still decreasing towards the new end
    assert float(schedule(5)) == pytest.approx(0.1 + 0.9 * 0.5)  # warm-up untouched


@pytest.mark.parametrize(
    "done, elapsed, times, budget, max_epochs, expected",
    [
        (1, 70, [70], 1800, 40, 25),  # the first epoch also compiles: a pessimistic first plan, 24 more
        (10, 510, [60] + [50] * 9, 1800, 40, 35),  # 1290 s left, 50 s each, half an epoch in hand -> 25 more
        (10, 310, [40] + [30] * 9, 1800, 40, 40),  # everything fits: never more than asked for
        (30, 1770, [59] * 30, 1800, 40, 30),  # no time for one more: stop now
        (30, 1900, [63] * 30, 1800, 40, 30),  # already late: never fewer than done
        (0, 0, [], 1800, 40, 40),
    ],
)
def test_plan_epochs(done, elapsed, times, budget, max_epochs, expected):
    assert plan_epochs(done, elapsed, times, budget, max_epochs) == expected


@pytest.mark.slow
def test_train_stops_within_its_time_budget(tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "--arch", "tiny", "--limit", "1000", "--test-limit", "100", "--epochs", "500",
                                   "--time-budget", "0.05", "--out", str(out)])
    assert res.exit_code == 0, res.output
    plans = [int(m) for m in re.findall(r"time budget 0.05 min: (\d+) of 500 epochs fit", res.output)]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["stopped_by"] == "time budget (0.05 min)" and meta["config"]["time_budget_min"] == 0.05
    # it ran what its last plan said fitted (a plan is re-made as epochs are timed), not a fixed share of 500
    assert plans and meta["epochs_run"] == plans[-1] < 500, (plans, meta["epochs_run"])


@pytest.mark.parametrize(
    "started, reserve_s, expected",
    [
        # after 2 epochs (20 s): 80 s left, minus half an epoch in hand -> 7 more: 9 epochs, 90 steps
        (None, 0.0, 9),
        # the command started 15 s before training and 25 s are kept for saving: after 2 epochs 35 s have gone
        # of 75 -> 40 s left, minus half an epoch -> 3 more: 5 epochs
        (-15.0, 25.0, 5),
    ],
)
def test_budget_callback_moves_the_schedule_end_and_stops_on_plan(monkeypatch, started, reserve_s, expected):
    import types

    from fmnist_edge.train import budget

    clock = iter([0.0] + [10.0 * (i + 1) for i in range(40)])  # train begins at 0, then 10 s per epoch
    monkeypatch.setattr(budget.time, "perf_counter", lambda: next(clock))
    schedule = warmup_cosine(1.0, 10, 400)
    lines = []
    cb = budget.time_budget(100.0, max_epochs=40, steps_per_epoch=10, schedule=schedule, log=lines.append,
                            started=started, reserve_s=reserve_s)
    model = types.SimpleNamespace(stop_training=False)
    cb.set_model(model)
    cb.on_train_begin()
    epoch = 0
    while not model.stop_training:
        cb.on_epoch_end(epoch)
        epoch += 1
    assert epoch == expected and cb.planned == expected and cb.stopped
    assert float(schedule.total_steps.numpy()) == expected * 10.0
    assert float(schedule(expected * 10)) == pytest.approx(ALPHA)
    assert lines[-1].startswith(f"time budget 1.66667 min: {expected} of 40 epochs fit (~10 s each)")
