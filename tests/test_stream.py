"""The video pipeline: stages overlap, results keep the source's order, and every way of
ending (end of input, an error in any part, the consumer stopping) stops all threads."""
import random
import threading
import time

import pytest

from mxpose.stream import Pipeline


def _pipeline_threads():
    return [t for t in threading.enumerate() if t.name.startswith("pipeline-")]


def _jitter(fn):
    rng = random.Random(0)

    def stage(x):
        time.sleep(rng.uniform(0, 0.004))
        return fn(x)
    return stage


def test_order_and_results():
    p = Pipeline(range(50), [_jitter(lambda x: x * 2), _jitter(lambda x: x + 1)], maxsize=2)
    assert list(p) == [2 * i + 1 for i in range(50)]
    assert not _pipeline_threads()
    assert set(p.busy) == {"source", "stage1", "stage2"}


def test_stages_overlap():
    """Three stages of 15 ms per item: the pipeline takes about one stage's time per
    item, not the sum of the three."""
    def slow(x):
        time.sleep(0.015)
        return x

    def source():
        for i in range(20):
            time.sleep(0.015)
            yield i
    t0 = time.perf_counter()
    assert list(Pipeline(source(), [slow, slow])) == list(range(20))
    wall = time.perf_counter() - t0
    serial = 3 * 20 * 0.015
    assert wall < 0.6 * serial, (wall, serial)


@pytest.mark.parametrize("where", ["source", "stage"])
def test_error_stops_everything_and_reaches_the_consumer(where):
    closed = []

    def source():
        try:
            for i in range(1000):
                if where == "source" and i == 5:
                    raise ValueError("bad frame 5")
                yield i
        finally:
            closed.append(True)

    def stage(x):
        if where == "stage" and x == 7:
            raise ValueError("bad frame 7")
        return x
    got = []
    with pytest.raises(ValueError, match="bad frame"):
        for x in Pipeline(source(), [stage, lambda x: x]):
            got.append(x)
    assert got == list(range(5 if where == "source" else 7))
    assert closed == [True]                 # the source's finally ran (capture released)
    time.sleep(0.2)
    assert not _pipeline_threads()


def test_consumer_leaving_early_stops_the_threads():
    closed = []

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(True)
    with Pipeline(endless(), [lambda x: x], maxsize=1) as p:
        for x in p:
            if x == 10:
                break
    assert closed == [True]
    assert not _pipeline_threads()
    # a KeyboardInterrupt in the consumer (Ctrl-C) ends it the same way
    closed.clear()
    with pytest.raises(KeyboardInterrupt):
        with Pipeline(endless(), [lambda x: x]) as p:
            for x in p:
                if x == 3:
                    raise KeyboardInterrupt
    assert closed == [True] and not _pipeline_threads()


def test_several_workers_keep_the_order_and_share_the_work():
    """A stage in three threads: items finish out of turn (random sleeps) yet come out in
    the source's order; the stage's busy time is per worker, and the workers overlap."""
    seen = set()

    def slow(x):
        seen.add(threading.current_thread().name)
        time.sleep(random.Random(x).uniform(0.005, 0.03))
        return x * 10
    p = Pipeline(range(40), [lambda x: x, slow, lambda x: x + 1], maxsize=2,
                 workers=[1, 3, 1])
    t0 = time.perf_counter()
    assert list(p) == [10 * i + 1 for i in range(40)]
    wall = time.perf_counter() - t0
    assert seen == {"pipeline-stage2-0", "pipeline-stage2-1", "pipeline-stage2-2"}
    total = sum(random.Random(x).uniform(0.005, 0.03) for x in range(40))
    assert wall < 0.7 * total, (wall, total)         # one worker alone needs `total`
    assert p.busy["stage2"] == pytest.approx(total / 3, rel=0.35)
    assert not _pipeline_threads()


def test_an_error_in_one_of_several_workers_stops_everything():
    def stage(x):
        time.sleep(0.002)
        if x == 9:
            raise ValueError("bad frame 9")
        return x
    got = []
    with pytest.raises(ValueError, match="bad frame 9"):
        for x in Pipeline(range(1000), [stage], workers=[2]):
            got.append(x)
    assert got == list(range(len(got))) and len(got) <= 9
    time.sleep(0.2)
    assert not _pipeline_threads()


def test_bad_arguments():
    with pytest.raises(ValueError, match="maxsize"):
        Pipeline([], [], maxsize=0)
    with pytest.raises(ValueError, match="names"):
        Pipeline([], [len], names=["a"])
    with pytest.raises(ValueError, match="workers"):
        Pipeline([], [len], workers=[0])
    with pytest.raises(ValueError, match="workers"):
        Pipeline([], [len, len], workers=[2])
