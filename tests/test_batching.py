"""Dynamic batching: concurrent requests share model calls, and each gets the answer it would get alone."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from fmnist_edge.runtime import to_model_input
from fmnist_edge.serve.batching import Batcher


def _rowwise(model, x):
    """A real row-wise computation standing in for a model: each row's answer depends on that row alone."""
    calls.append((model, len(x)))
    return x.reshape(len(x), -1)[:, :10] * 2.0 + model


calls: list = []


def _run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_calls_and_get_their_own_rows():
    calls.clear()
    batcher = Batcher(_rowwise, max_delay_s=0.5, preferred=(8,), max_batch=64)
    xs = [np.full((n, 28, 28, 1), i, np.float32) for i, n in enumerate([1, 3, 2, 2])]

    async def main():
        return await asyncio.gather(*(batcher.submit(1.0, x) for x in xs))

    results = _run(main())
    assert calls == [(1.0, 8)]  # 1 + 3 + 2 + 2 = the preferred size: sent at once, not after the delay
    for x, (probs, timing) in zip(xs, results, strict=True):
        np.testing.assert_array_equal(probs, _rowwise(1.0, x))
        assert timing.batch == 8 and timing.queue_ns >= 0 and timing.infer_ns > 0


def test_a_lone_request_goes_after_the_delay_and_models_never_mix():
    calls.clear()
    batcher = Batcher(_rowwise, max_delay_s=0.01, preferred=(64,), max_batch=64)

    async def main():
        return await asyncio.gather(batcher.submit(1.0, np.ones((2, 28, 28, 1), np.float32)),
                                    batcher.submit(5.0, np.ones((1, 28, 28, 1), np.float32)),
                                    batcher.submit(1.0, np.ones((1, 28, 28, 1), np.float32)))

    (a, _), (b, _), (c, _) = _run(main())
    assert sorted(calls) == [(1.0, 3), (5.0, 1)]
    assert a[0, 0] == 3.0 and b[0, 0] == 7.0 and c[0, 0] == 3.0


def test_batches_never_pass_the_largest_and_requests_stay_whole():
    calls.clear()
    batcher = Batcher(_rowwise, max_delay_s=0.05, preferred=(4, 8), max_batch=8)

    async def main():
        return await asyncio.gather(*(batcher.submit(0.0, np.full((3, 28, 28, 1), i, np.float32)) for i in range(5)))

    results = _run(main())
    assert all(n <= 8 for _, n in calls) and sum(n for _, n in calls) == 15
    for i, (probs, _) in enumerate(results):
        assert probs.shape == (3, 10) and (probs == 2.0 * i).all()


def test_an_error_reaches_every_request_of_its_batch_and_the_next_batch_runs():
    def failing(model, x):
        if (x > 0.5).any():
            raise ValueError("bad batch")
        return np.zeros((len(x), 10), np.float32)

    batcher = Batcher(failing, max_delay_s=0.05, max_batch=64)

    async def main():
        first = await asyncio.gather(batcher.submit(0, np.ones((1, 28, 28, 1), np.float32)),
                                     batcher.submit(0, np.zeros((1, 28, 28, 1), np.float32)), return_exceptions=True)
        second = await batcher.submit(0, np.zeros((2, 28, 28, 1), np.float32))
        return first, second

    first, (probs, _) = _run(main())
    assert all(isinstance(e, ValueError) for e in first) and probs.shape == (2, 10)


@pytest.fixture(scope="module")
def batched_url(clf):
    pytest.importorskip("starlette")
    from live import live_server

    from fmnist_edge.serve import create_app

    with live_server(create_app(clf, max_batch_delay_us=100_000, preferred_batch_sizes=(16,))) as base:
        yield base


def test_a_batching_server_answers_each_request_as_if_alone(batched_url, clf, fmnist):
    """16 clients at once against a server that batches: each answer equals the model's on that request alone,
    and the statistics show fewer model calls than requests."""
    httpclient = pytest.importorskip("tritonclient.http")
    x = to_model_input(fmnist.x_test[:48])
    alone = [clf.predict_tensor(x[i : i + 3]) for i in range(0, 48, 3)]
    got: dict[int, np.ndarray] = {}
    start = threading.Barrier(16)

    def client(i):
        c = httpclient.InferenceServerClient(batched_url.removeprefix("http://"))
        inp = httpclient.InferInput("image", [3, 28, 28, 1], "FP32")
        inp.set_data_from_numpy(x[3 * i : 3 * i + 3])
        start.wait(30)
        got[i] = c.infer("fmnist", [inp]).as_numpy("probabilities")
        c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(got) == list(range(16))
    for i in range(16):
        np.testing.assert_allclose(got[i], alone[i], atol=1e-5)
        assert (got[i].argmax(1) == alone[i].argmax(1)).all()
    stats = httpclient.InferenceServerClient(batched_url.removeprefix("http://")).get_inference_statistics("fmnist")
    row = stats["model_stats"][0]
    assert row["inference_count"] == 48 and row["execution_count"] < 16
    assert any(b["batch_size"] > 3 for b in row["batch_stats"])
