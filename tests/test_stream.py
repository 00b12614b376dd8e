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


def test_bad_arguments():
    with pytest.raises(ValueError, match="maxsize"):
        Pipeline([], [], maxsize=0)
    with pytest.raises(ValueError, match="names"):
        Pipeline([], [len], names=["a"])
