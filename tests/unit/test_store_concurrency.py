"""Concurrent writers of the wwids and bindings files, from many processes and threads at once."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import Counter

from pymultipathd import store

PROCS = 20
EACH = 20
ctx = multiprocessing.get_context("fork")


def _run_all(target, args_of) -> list:
    """Start PROCS processes of `target`, released together by a barrier; their results (via a queue)."""
    barrier = ctx.Barrier(PROCS)
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(barrier, queue, *args_of(i))) for i in range(PROCS)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in procs]  # timeout only guards against a hang
    for p in procs:
        p.join()
        assert p.exitcode == 0
    return results


def _adder(barrier, queue, path: str, worker: int) -> None:
    barrier.wait()
    added = [store.add_wwid(f"w{worker}-{i}", path) for i in range(EACH)]
    queue.put(added)


def test_concurrent_adds_lose_nothing(tmp_path):
    path = str(tmp_path / "wwids")
    results = _run_all(_adder, lambda i: (path, i))
    assert all(all(r) for r in results)
    content = open(path).read().split("\n")[:-1]
    assert content[:5] == store.WWIDS_HEADER.splitlines()
    entries = Counter(content[5:])
    expected = {f"/w{p}-{i}/" for p in range(PROCS) for i in range(EACH)}
    assert set(entries) == expected
    assert all(n == 1 for n in entries.values())
    assert len(store.read_wwids(path)) == PROCS * EACH
    assert sorted(os.listdir(tmp_path)) == ["wwids", "wwids.lock"]  # no stray temp files


def _add_remove(barrier, queue, path: str, worker: int) -> None:
    barrier.wait()
    if worker % 2:
        done = [store.remove_wwid(f"old{worker}-{i}", path) for i in range(EACH)]
    else:
        done = [store.add_wwid(f"new{worker}-{i}", path) for i in range(EACH)]
    queue.put(done)


def test_concurrent_adds_and_removes(tmp_path):
    path = str(tmp_path / "wwids")
    old = [f"old{p}-{i}" for p in range(PROCS) for i in range(EACH)]
    store.replace_wwids(old, path)
    results = _run_all(_add_remove, lambda i: (path, i))
    assert all(all(r) for r in results)
    survivors = [w for w in old if int(w[3:].split("-")[0]) % 2 == 0]
    added = [f"new{p}-{i}" for p in range(0, PROCS, 2) for i in range(EACH)]
    got = store.read_wwids(path)
    assert len(got) == len(set(got))
    assert set(got) == set(survivors) | set(added)


def _allocator(barrier, queue, path: str, worker: int) -> None:
    barrier.wait()
    queue.put([(f"w{worker}-{i}", store.alias_for(f"w{worker}-{i}", path=path)) for i in range(EACH)])


def test_concurrent_alias_allocation_never_duplicates(tmp_path):
    path = str(tmp_path / "bindings")
    handed_out = dict(pair for result in _run_all(_allocator, lambda i: (path, i)) for pair in result)
    assert len(handed_out) == PROCS * EACH
    aliases = list(handed_out.values())
    assert len(set(aliases)) == len(aliases)
    # lowest free each time: together they are exactly the first 400 names
    assert set(aliases) == {store.format_alias(i) for i in range(1, PROCS * EACH + 1)}
    bound = store.read_bindings(path)
    assert {w: a for a, w in bound.items()} == handed_out
    body = [ln for ln in open(path).read().split("\n")[:-1] if ln and not ln.startswith("#")]
    assert len(body) == PROCS * EACH


def _same_wwid(barrier, queue, path: str) -> None:
    barrier.wait()
    queue.put(store.alias_for("shared-wwid", path=path))


def test_concurrent_allocation_for_one_wwid_binds_it_once(tmp_path):
    path = str(tmp_path / "bindings")
    store.alias_for("first", path=path)
    results = _run_all(_same_wwid, lambda i: (path,))
    assert set(results) == {"mpathb"}
    assert store.read_bindings(path) == {"mpatha": "first", "mpathb": "shared-wwid"}
    assert sum("shared-wwid" in ln for ln in open(path)) == 1


def test_threads_of_one_process_lose_nothing(tmp_path):
    # fcntl locks do not exclude threads of one process from each other; the store must
    path = str(tmp_path / "wwids")
    barrier = threading.Barrier(8)

    def work(t: int) -> None:
        barrier.wait()
        for i in range(EACH):
            store.add_wwid(f"t{t}-{i}", path)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = store.read_wwids(path)
    assert sorted(got) == sorted(f"t{t}-{i}" for t in range(8) for i in range(EACH))
