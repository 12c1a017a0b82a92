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
    from tests.vm import harness, rootboot

    started = []
    monkeypatch.setattr(harness, "shell_check", lambda: started.append("check") or 1)
    monkeypatch.setattr(rootboot, "run", lambda: started.append("rootboot") or 0)

    def suite() -> int:
        started.append("suite")
        return 0

    assert harness._alongside_shell_check(suite) == 1  # a failed shell check fails the tier
    assert sorted(started) == ["check", "rootboot", "suite"]
    monkeypatch.setattr(harness, "shell_check", lambda: 0)
    assert harness._alongside_shell_check(lambda: 2) == 2
    monkeypatch.setattr(rootboot, "run", lambda: 3)
    assert harness._alongside_shell_check(lambda: 0) == 3  # so does a failed root boot


def test_a_boot_whose_shares_did_not_mount_is_booted_again(tmp_path, monkeypatch):
    """The 9p share mount can race the device's probe in a one-CPU guest: the job unit never starts and the
    guest would sit idle until its limit (40 min). The harness sees it on the console, keeps that console
    log, and boots the guest again, at most BOOT_TRIES times."""
    from tests.vm import harness

    class Proc:
        pid, returncode = 0, None

        def poll(self):
            return None

    boots = []

    def start(self, img, smp):
        boots.append(self.boots + 1)
        self.boots, self.img, self.smp, self.t0, self.proc = self.boots + 1, img, smp, 0.0, Proc()
        (self.out / "console.log").write_bytes(
            b"[   47.3] 9pnet_virtio: no channels available for device pymp_out\n"
            b"[\x1b[0;1;31mFAILED\x1b[0m] Failed to mount \x1b[0;1;39mmnt-out.mount\x1b[0m - /mnt/out.\n")

    monkeypatch.setattr(harness.Job, "start", start)
    monkeypatch.setattr(harness.Job, "kill", lambda self: None)
    monkeypatch.setattr(harness.time, "monotonic", lambda: 1.0)
    job = harness.Job("test", [], tmp_path / "out", 2400.0)
    job.start(tmp_path, "1")
    assert job.running() and boots == [1, 2]          # the first failed boot: booted again
    assert job.running() and boots == [1, 2, 3]
    assert not job.running() and boots == [1, 2, 3]   # BOOT_TRIES boots: given up, reported by finish()
    assert sorted(p.name for p in (tmp_path / "out").glob("console-boot*.log")) == [
        "console-boot1.log", "console-boot2.log", "console-boot3.log"]
    (tmp_path / "out" / "console.log").write_bytes(b"Welcome\n")
    (tmp_path / "out" / "run.log").write_bytes(b"")
    assert not job._boot_failed()                      # a job that started is never rebooted
