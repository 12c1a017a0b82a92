"""Locations and options are read once, at a program's entry, into explicit values that are passed down."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, MutableMapping

import pytest
from sysfs_tree import Tree

from pymultipathd import locations, udevlink
from pymultipathd.cli import pymultipath
from pymultipathd.locations import Locations
from pymultipathd.record import FrozenInstanceError

W1 = "36001405aaaa"


def test_from_env_defaults_env_and_overrides():
    assert Locations.from_env({}) == Locations()
    assert Locations().config_file == "/etc/multipath.conf" and Locations().sysfs == "/sys"
    got = Locations.from_env({"PYMULTIPATH_CONF": "/e.conf", "PYMULTIPATH_SYSFS": "", "OTHER": "x",
                              "PYMULTIPATH_RUNDIR": "/r"}, config_file="/o.conf", config_dir=None)
    # the command line beats the environment; an empty variable or an option not given leaves the default
    assert (got.config_file, got.sysfs, got.config_dir, got.run_dir) == ("/o.conf", "/sys",
                                                                           "/etc/multipath/conf.d", "/r")
    assert got.failed_wwids_dir == "/r/failed_wwids" and got.find_multipaths_dir == "/r/find_multipaths"
    with pytest.raises(TypeError):
        Locations.from_env({}, no_such_location="/x")
    with pytest.raises(FrozenInstanceError):
        got.sysfs = "/elsewhere"  # type: ignore[misc]


def test_env_names_only_what_is_not_upstreams_default():
    assert Locations().env() == {}
    where = Locations.from_env({"PYMULTIPATH_SYSFS": "/s", "PYMULTIPATH_CONF": "/etc/multipath.conf"})
    assert where.env() == {"PYMULTIPATH_SYSFS": "/s"}
    assert Locations.from_env(where.env()) == where
    assert set(locations.ENV_VARS) == set(Locations.from_env({v: "/x" for v in locations.ENV_VARS}).env())


def test_functions_answer_from_the_installed_locations_not_the_environment(monkeypatch):
    monkeypatch.setenv("PYMULTIPATH_SYSFS", "/from-env")
    assert locations.sysfs() == "/from-env"  # nothing installed: os.environ, read on first use
    locations.install(Locations(sysfs="/installed", run_dir="/r"))
    os.environ["PYMULTIPATH_SYSFS"] = "/changed"  # behind monkeypatch's back: nothing re-reads it
    assert (locations.sysfs(), locations.failed_wwids_dir()) == ("/installed", "/r/failed_wwids")
    assert locations.install(None) == Locations(sysfs="/installed", run_dir="/r")
    assert locations.sysfs() == "/changed"


def test_request_env_and_foreign_context():
    event = {"DEVPATH": "/devices/x/block/sdb", "PYMULTIPATH_CONF": "/stale", "ID_SERIAL": "s",
             "PYMULTIPATH_FIND_MULTIPATHS": "greedy", "PYMULTIPATH_SYSFS": "/s"}
    where = Locations(config_file="/c", sysfs="/s")
    env = udevlink.request_env(event, where)
    # the event's own variables in their order; the context as the entry made it of env and options
    assert env == {"DEVPATH": "/devices/x/block/sdb", "PYMULTIPATH_CONF": "/c", "ID_SERIAL": "s",
                   "PYMULTIPATH_SYSFS": "/s"}
    assert list(env) == ["DEVPATH", "PYMULTIPATH_CONF", "ID_SERIAL", "PYMULTIPATH_SYSFS"]
    assert udevlink.foreign_context(env, where) is None
    assert udevlink.foreign_context(env, Locations(sysfs="/s")) == "PYMULTIPATH_CONF"
    with_i = udevlink.request_env(event, where, "greedy")
    assert with_i["PYMULTIPATH_FIND_MULTIPATHS"] == "greedy"
    assert udevlink.foreign_context(with_i, where) == "PYMULTIPATH_FIND_MULTIPATHS"
    # an unset variable, an empty one and one naming the default agree
    assert udevlink.foreign_context({"PYMULTIPATH_CONF": "", "PYMULTIPATH_RUNDIR": "/run/multipath"},
                                    Locations()) is None


class Watched(MutableMapping[str, str]):
    """os.environ that notes every read."""

    def __init__(self, real: MutableMapping[str, str], reads: list[str]) -> None:
        self.real, self.reads = real, reads

    def __getitem__(self, key: str) -> str:
        self.reads.append(key)
        return self.real[key]

    def __iter__(self) -> Iterator[str]:
        self.reads.append("*")
        return iter(self.real)

    def __len__(self) -> int:
        return len(self.real)

    def __setitem__(self, key: str, value: str) -> None:
        self.reads.append(f"{key}=")
        self.real[key] = value

    def __delitem__(self, key: str) -> None:
        self.reads.append(f"del {key}")
        del self.real[key]


@contextlib.contextmanager
def environment_untouched() -> Iterator[None]:
    reads: list[str] = []
    real = os.environ
    os.environ = Watched(real, reads)  # type: ignore[assignment]  # noqa: B003 - watched, not cleared
    try:
        yield
    finally:
        os.environ = real  # type: ignore[assignment]  # noqa: B003
    assert reads == [], f"the environment was used after the program's entry: {reads}"


@pytest.fixture
def tree(tmp_path):
    t = Tree(tmp_path)
    t.disk("sdb", "8:16", W1)
    t.config("defaults {\n find_multipaths strict\n}\n")
    return t


def test_u_reads_the_environment_once_at_its_entry(tree, capsys):
    # the udev event's properties reach the facts from the entry: the WWID is in them, not in udev's database
    (tree.db / "b8:16").unlink()
    env = tree.env(SUBSYSTEM="block", DEVPATH="/devices/platform/host3/block/sdb", ID_SERIAL=W1,
                   ID_WWN="0x6001405")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as control:  # a daemon, not asked for -u
        control.bind(locations.unix_address(env["MULTIPATH_SOCKET_NAME"]))
        control.listen(8)
        with environment_untouched():
            assert pymultipath.main(["-u", "sdb", "--explain"], env) == 0
        out, err = capsys.readouterr()
        assert (out, err.splitlines()[-1]) == ('DM_MULTIPATH_DEVICE_PATH="0"\n', "sdb: no (rule strict)")
        # -i: greedy from the command line, passed down to the configuration, not through the environment
        with environment_untouched():
            assert pymultipath.main(["-i", "-u", "sdb", "--explain"], env) == 0
        out, err = capsys.readouterr()
    assert "-i is deprecated" in err and err.splitlines()[-1] == "sdb: yes (rule greedy)"
    assert out == 'DM_MULTIPATH_DEVICE_PATH="1"\n'
    assert locations.current() == Locations.from_env(env)


def test_global_options_are_passed_down_not_written_to_the_environment(tree, monkeypatch, capsys):
    other = tree.root / "other.conf"
    other.write_text("defaults {\n polling_interval 17\n}\n")
    for k, v in tree.env().items():
        monkeypatch.setenv(k, v)
    before = dict(os.environ)
    assert pymultipath.main(["--config", str(other), "-t"]) == 0
    assert "\tpolling_interval 17\n" in capsys.readouterr().out
    assert pymultipath.main(["--config-dir=" + str(tree.root / "none"), "-i", "-t"]) == 0
    assert "\tpolling_interval 17\n" not in capsys.readouterr().out
    assert dict(os.environ) == before


def test_pymultipathd_reads_its_environment_at_its_entry(monkeypatch, capsys):
    from pymultipathd.cli import pymultipathd

    sent = []
    monkeypatch.setattr(pymultipathd, "_one", lambda command, timeout: sent.append((command, timeout)) or 0)
    env = {"PYMULTIPATH_CLIENT_TIMEOUT": "7.5", "MULTIPATH_SOCKET_NAME": "@/pymp-test/entry"}
    with environment_untouched():
        assert pymultipathd.main(["show", "paths"], env) == 0
        assert pymultipathd.main(["-kshow maps"], {}) == 0
    assert sent == [("show paths", 7.5), ("show maps", pymultipathd.CLIENT_TIMEOUT)]
    assert pymultipathd.main(["show", "paths"], env) == 0 and locations.socket_name() == "@/pymp-test/entry"
    assert pymultipathd.main(["show", "paths"], {"PYMULTIPATH_CLIENT_TIMEOUT": "soon"}) == 2
    assert "PYMULTIPATH_CLIENT_TIMEOUT='soon'" in capsys.readouterr().err


def test_the_client_waits_uxsock_timeout_without_the_environment(monkeypatch, tmp_path):
    from pymultipathd.cli import pymultipathd

    sent = []
    monkeypatch.setattr(pymultipathd, "_one", lambda command, timeout: sent.append(timeout) or 0)
    conf = tmp_path / "multipath.conf"
    conf.write_text("defaults {\n uxsock_timeout 1500\n}\n")
    env = {"PYMULTIPATH_CONF": str(conf), "PYMULTIPATH_CONFDIR": str(tmp_path / "none")}
    with environment_untouched():
        assert pymultipathd.main(["show", "paths"], env) == 0
        assert pymultipathd.main(["show", "paths"], {**env, "PYMULTIPATH_CLIENT_TIMEOUT": "9"}) == 0
        conf.write_text("defaults {\n uxsock_timeout -3\n}\n")  # a broken file: the client's own default
        assert pymultipathd.main(["show", "paths"], env) == 0
    assert sent == [1.5, 9.0, pymultipathd.CLIENT_TIMEOUT]
