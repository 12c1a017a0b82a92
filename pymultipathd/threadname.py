"""The kernel's name of a daemon thread, so `top -H`, `ps -L` and /proc/<pid>/task/*/comm tell the checker
threads from the device-mapper thread or the event loop (Python names its threads for itself only).

A thread calls name_this_thread() first thing: the kernel keeps at most 15 bytes of a name, and a /proc that
cannot be written (not mounted, a sandbox) leaves the process's own name, which is only cosmetic."""

from __future__ import annotations

import threading

COMM_MAX = 15  # TASK_COMM_LEN less its NUL


def name_this_thread() -> None:
    """Give the calling thread its Python name in the kernel (usable as a ThreadPoolExecutor initializer)."""
    name = threading.current_thread().name.encode(errors="replace")[:COMM_MAX]
    try:
        with open("/proc/thread-self/comm", "wb", buffering=0) as f:
            f.write(name)
    except OSError:
        pass
