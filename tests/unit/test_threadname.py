"""Daemon threads carry their Python names in the kernel (top -H, ps -L, the bench's CPU by thread)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from pymultipathd.threadname import COMM_MAX, name_this_thread


def _comm() -> str:
    with open("/proc/thread-self/comm") as f:
        return f.read().strip()


def test_a_thread_takes_its_python_name() -> None:
    seen: list[str] = []

    def run() -> None:
        name_this_thread()
        seen.append(_comm())

    t = threading.Thread(target=run, name="checker_3")
    t.start()
    t.join()
    assert seen == ["checker_3"]


def test_long_names_are_cut_to_what_the_kernel_keeps() -> None:
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="a-very-long-prefix",
                            initializer=name_this_thread) as pool:
        comm = pool.submit(_comm).result()
    assert comm == "a-very-long-prefix_0"[:COMM_MAX]


def test_an_unwritable_proc_is_not_an_error(monkeypatch) -> None:
    def refuse(*_a, **_k):
        raise PermissionError("read-only /proc")

    monkeypatch.setattr("builtins.open", refuse)
    name_this_thread()  # nothing raised: the name is cosmetic
