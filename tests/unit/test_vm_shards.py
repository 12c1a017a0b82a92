"""How the VM suite is split over guests (tests/vm/harness.py): each file runs once, weights balance."""

from __future__ import annotations

from tests.vm.harness import WEIGHTS, shard_files


def test_every_file_in_exactly_one_shard():
    files = [f"tests/vm/{name}" for name in sorted(WEIGHTS)] + ["tests/vm/test_new.py"]
    groups = shard_files(files, 2)
    assert len(groups) == 2
    flat = [f for g in groups for f in g]
    assert sorted(flat) == sorted(files)


def test_weights_are_balanced(monkeypatch):
    for name, minutes in {"test_big.py": 4, "test_small1.py": 2, "test_small2.py": 2}.items():
        monkeypatch.setitem(WEIGHTS, name, minutes)
    files = ["a/test_big.py", "a/test_small1.py", "a/test_small2.py"]
    assert shard_files(files, 2) == [["a/test_big.py"], ["a/test_small1.py", "a/test_small2.py"]]


def test_more_shards_than_files_leaves_no_empty_guest():
    assert shard_files(["tests/vm/test_bed.py"], 3) == [["tests/vm/test_bed.py"]]


def test_shell_check_runs_beside_the_suite_and_both_results_count(monkeypatch):
    from tests.vm import harness

    started = []
    monkeypatch.setattr(harness, "shell_check", lambda: started.append("check") or 1)

    def suite() -> int:
        started.append("suite")
        return 0

    assert harness._alongside_shell_check(suite) == 1  # a failed shell check fails the tier
    assert sorted(started) == ["check", "suite"]
    monkeypatch.setattr(harness, "shell_check", lambda: 0)
    assert harness._alongside_shell_check(lambda: 2) == 2
