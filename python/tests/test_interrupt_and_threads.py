"""Ctrl-C stops a run between GPU batches with KeyboardInterrupt and nothing is produced; an
exception raised by the progress callback stops it the same way; the interpreter lock is released
while the GPU works, so other Python threads run meanwhile."""

import os
import signal
import threading
import time

import pytest

import neoprobe
from conftest import TINY, VERBS, words_of


@pytest.fixture(scope="module")
def small_batches():
    """The fixture model in batches of at most 8 tokens: the 100 verbs take many batches."""
    return neoprobe.Model.from_dir(TINY, batch_tokens=8)


def test_a_callback_that_raises_keyboardinterrupt_stops_at_the_next_batch(small_batches):
    calls = []

    def progress(done, total):
        calls.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        small_batches.run_with_cache(words_of(VERBS), names=["blocks.3.mlp.hook_pre"], progress=progress)
    assert len(calls) == 1, "no batch ran after the interrupt"


def test_sigint_from_the_callback_is_keyboardinterrupt(small_batches):
    calls = []

    def progress(done, total):
        calls.append(done)
        signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        small_batches.run_with_cache(words_of(VERBS), names=["blocks.3.mlp.hook_pre"], progress=progress)
    assert len(calls) == 1


def test_any_exception_of_the_callback_is_raised(small_batches):
    def progress(done, total):
        raise ZeroDivisionError("from the callback")

    with pytest.raises(ZeroDivisionError, match="from the callback"):
        small_batches.run_with_cache(words_of(VERBS), names=["blocks.3.mlp.hook_pre"], progress=progress)


def test_ctrl_c_while_the_gpu_works(small_batches):
    """A real SIGINT to the process while the main thread is inside the native call (the lock
    released): the handler runs at the next check between batches."""
    words = words_of(VERBS) * 20
    done = []
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            small_batches.run_with_cache(words, names=["logits"], return_type=None, progress=lambda d, t: done.append((d, t)))
    finally:
        timer.cancel()
    assert done, "some batches ran before the interrupt"
    assert done[-1][0] < done[-1][1], f"stopped before the end: {done[-1]}"
    assert time.monotonic() - started < 60


def test_an_interrupted_challenge_writes_nothing(small_batches, tmp_path):
    def progress(done, total):
        raise KeyboardInterrupt

    out = tmp_path / "challenge"
    with pytest.raises(KeyboardInterrupt):
        small_batches.challenge(out, permutations=0, progress=progress)
    assert not out.exists() or not any(out.iterdir()), "no file written"


def test_other_threads_run_while_the_gpu_works(model):
    """A thread ticking every millisecond keeps ticking through a long native call; with the lock
    held the whole call, it could not tick between the call's start and its end."""
    words = words_of(VERBS) * 30
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.001)

    thread = threading.Thread(target=tick)
    thread.start()
    try:
        time.sleep(0.05)
        started = time.monotonic()
        model.run_with_cache(words, names=["blocks.11.hook_resid_post"])
        ended = time.monotonic()
    finally:
        stop.set()
        thread.join()
    duration = ended - started
    assert duration > 0.3, f"the call must take long enough to tell ({duration:.2f} s)"
    middle = [t for t in ticks if started + 0.2 * duration < t < ended - 0.2 * duration]
    assert len(middle) >= 0.6 * duration / 0.01, f"{len(middle)} ticks in the middle {0.6 * duration:.2f} s of the call"


def test_two_threads_share_a_model(model):
    """Calls from two threads at once each get their own, correct result."""
    _, alone = model.run_with_cache(words_of(VERBS), names=["blocks.4.hook_resid_post"], return_type=None)
    results = [None, None]

    def run(i):
        results[i] = model.run_with_cache(words_of(VERBS), names=["blocks.4.hook_resid_post"], return_type=None)[1]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for cache in results:
        assert (cache["blocks.4.hook_resid_post"] == alone["blocks.4.hook_resid_post"]).all()
