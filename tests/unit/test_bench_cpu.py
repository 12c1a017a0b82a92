"""The bench's CPU split by thread reads each thread's time on a CPU, named as the daemon names them."""

from __future__ import annotations

import os
import threading
import time

from pymultipathd.threadname import name_this_thread
from tests.vm import bench_daemon


def _spin(seconds: float) -> None:
    name_this_thread()
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_pools_threads_count_as_one_with_their_precise_time() -> None:
    before = bench_daemon._thread_cpu(os.getpid()).get("checker", 0)
    done = threading.Event()
    threads = [threading.Thread(target=lambda: (_spin(0.03), done.wait()), name=f"checker_{i}")
               for i in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    try:
        during = bench_daemon._thread_cpu(os.getpid())
    finally:
        done.set()
        for t in threads:
            t.join()
    # three threads of 30 ms each: whole ticks (10 ms) per thread could have shown anything from 60 to 90
    assert 0.085 <= (during["checker"] - before) / 1e9 < 0.5
    assert not any(name.startswith("checker_") for name in during)
