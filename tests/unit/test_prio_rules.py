"""The prio_args-driven prioritizers: weightedpath, path_latency, iet, random (and ana's refusal)."""

from __future__ import annotations

import math
import os
import threading
import time

import pytest

from pymultipathd.paths import prio, prio_rules, sysinfo
from pymultipathd.paths.prio_rules import LatencyArgs, WeightedArgs
from tests.unit.sysfs_tree import Tree


@pytest.fixture
def tree(tmp_path, monkeypatch):
    return Tree(tmp_path).install(monkeypatch)


def test_undef_is_the_registrys():
    assert prio_rules.UNDEF == prio.PRIO_UNDEF


@pytest.mark.parametrize("name", ["weightedpath", "path_latency", "iet", "random"])
def test_registered_and_chosen(name):
    assert prio.PRIORITIZERS[name].__module__ == prio_rules.__name__
    assert prio.choose(name, False, "") == name
    assert prio.choose(name, True, "") == name  # no ALUA access state: the configured one
    assert prio.choose(name, True, "active/optimized") == "sysfs"
    assert prio.choose(name, False, "active/optimized") == name  # detect_prio off


def test_unknown_names():
    assert prio.choose("nosuch", False, "") == "const" and prio.choose(None, False, "") == "const"
    assert prio.priority("nosuch", "sdb") == prio.PRIO_UNDEF


def test_ana_on_a_scsi_path_is_undefined():
    assert prio.choose("ana", False, "") == "ana"
    assert prio.priority("ana", "sdb") == prio.PRIO_UNDEF


def test_negative_answers_are_undefined_and_args_are_cut_as_upstream_cuts_them(monkeypatch):
    seen = []
    monkeypatch.setitem(prio.PRIORITIZERS, "probe", lambda dev, args, timeout: seen.append(args) or -5)
    assert prio.priority("probe", "sdb", "x" * 300) == prio.PRIO_UNDEF
    assert seen == ["x" * prio.PRIO_ARGS_MAX]


# --- weightedpath -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "parsed"),
    [
        ("hbtl 1:.:.:. 2 4:.:.:. 4", WeightedArgs("hbtl", (("1:.:.:.", 2), ("4:.:.:.", 4)))),
        ("devname sda 10 sde 20", WeightedArgs("devname", (("sda", 10), ("sde", 20)))),
        ("  devname\tsda \t 10  ", WeightedArgs("devname", (("sda", 10),))),
        ("serial .*J1FR.*324 5", WeightedArgs("serial", ((".*J1FR.*324", 5),))),
        ("wwn .*:.*:iqn.2009-10.com.redhat:.* 7",
         WeightedArgs("wwn", ((".*:.*:iqn.2009-10.com.redhat:.*", 7),))),
        ("devname sda 10 sdb", WeightedArgs("devname", (("sda", 10),))),   # a regex without a weight
        ("devname", WeightedArgs("devname", ())),
        ("devname sda x7", WeightedArgs("devname", (("sda", 0),))),        # atoi: no digits, 0
        ("devname sda 7x", WeightedArgs("devname", (("sda", 7),))),        # atoi: leading digits
        ("devname sda -3", WeightedArgs("devname", (("sda", -3),))),
        ("devname sda 4294967297", WeightedArgs("devname", (("sda", 1),))),  # int wraps as in C
    ],
)
def test_weighted_args(args, parsed):
    assert prio_rules.parse_weighted_args(args) == parsed


@pytest.mark.parametrize("args", ["", "   ", "weighted sda 1", "DEVNAME sda 1", "sda 1"])
def test_weighted_malformed_args(args):
    assert prio_rules.parse_weighted_args(args) is None


@pytest.mark.parametrize(
    ("args", "subject", "value"),
    [
        ("devname sda 10 sdb 20", "sdb", 20),
        ("devname sd.e 10", "sdbe", 10),                  # unanchored, as regexec
        ("devname ^sda$ 10 sd 20", "sdab", 20),
        ("devname sda 10 sd 20", "sdab", 10),             # the first match wins
        ("devname sdz 10", "sdb", 0),                     # no match: 0
        ("devname ( 10 sdb 20", "sdb", 20),               # a regex glibc refuses is passed over
        ("devname (a)\\1 10 sdb 20", "sdb", 20),          # as is one this project refuses (back-reference)
        ("hbtl 1:0:.:. 2 3:0:0:. 4", "3:0:0:1", 4),
        ("hbtl [[:digit:]]+:0:0:1 9", "3:0:0:1", 9),      # POSIX classes work: the regexes are glibc's
    ],
)
def test_weighted_value(args, subject, value):
    parsed = prio_rules.parse_weighted_args(args)
    assert parsed is not None and prio_rules.weighted_value(parsed, subject) == value


def test_weightedpath_through_the_registry(monkeypatch):
    monkeypatch.setattr(sysinfo, "hcil", lambda dev: "6:0:1:3")
    assert prio.priority("weightedpath", "sdc", "devname sdc 7") == 7
    assert prio.priority("weightedpath", "sdc", "devname sdd 7") == 0
    assert prio.priority("weightedpath", "sdc", "hbtl 6:0:1:3 40 6:.:.:. 5") == 40
    assert prio.priority("weightedpath", "sdc", "hbtl 7:.:.:. 40") == 0
    assert prio.priority("weightedpath", "sdc", "") == 0
    assert prio.priority("weightedpath", "sdc", "bogus sdc 7") == 0
    # a negative weight is a negative priority, which upstream takes for "undefined"
    assert prio.priority("weightedpath", "sdc", "devname sdc -4") == prio.PRIO_UNDEF


def test_weighted_subjects_from_sysfs(tree):
    base = tree.disk("sdb", "8:16", "3600a")
    real = tree.sys / "devices/platform/host3/session3/target3:0:0/3:0:0:1"
    # VPD page 80h: page code 80h, length 16, serial padded with blanks at both ends
    (real / "vpd_pg80").write_bytes(bytes([0x00, 0x80, 0x00, 16]) + b" 0395J1FR904324 ")
    sess = tree.sys / "devices/platform/host3/session3/iscsi_session/session3"
    sess.mkdir(parents=True)
    (sess / "targetname").write_text("iqn.2009-10.com.redhat.msp.lab.ask-06\n")
    assert base.exists()
    assert prio_rules.weighted_subject("hbtl", "sdb") == "3:0:0:1"
    assert prio_rules.weighted_subject("devname", "sdb") == "sdb"
    assert prio_rules.weighted_subject("serial", "sdb") == "0395J1FR904324"
    assert prio_rules.weighted_subject("wwn", "sdb") == \
        "[undef]:[undef]:iqn.2009-10.com.redhat.msp.lab.ask-06:[undef]"
    assert prio.priority("weightedpath", "sdb", "serial .*J1FR.*324 30") == 30
    assert prio.priority("weightedpath", "sdb", "wwn .*:.*:iqn.2009-10.com.redhat.msp.lab.ask-06:.* 8") == 8


def test_weighted_wwn_of_a_fibre_channel_path(tree):
    tree.disk("sdc", "8:32", "3600b", transport="rport-3:0-2")
    rport = tree.sys / "devices/platform/host3/rport-3:0-2"
    (rport / "fc_remote_ports/rport-3:0-2").mkdir(parents=True)
    (rport / "fc_remote_ports/rport-3:0-2/node_name").write_text("0x500a098000000001\n")
    host = tree.sys / "class/fc_host/host3"
    host.mkdir(parents=True)
    (host / "node_name").write_text("0x200100e08ba0aea0\n")
    (host / "port_name").write_text("0x210100e08ba0aea0\n")
    assert prio_rules.weighted_subject("wwn", "sdc") == \
        "0x200100e08ba0aea0:0x210100e08ba0aea0:0x500a098000000001:[unknown]"  # no fc_remote_ports class entry
    cls = tree.sys / "class/fc_remote_ports/rport-3:0-2"
    cls.mkdir(parents=True)
    (cls / "port_name").write_text("0x500a098100000001\n")
    assert prio_rules.weighted_subject("wwn", "sdc") == \
        "0x200100e08ba0aea0:0x210100e08ba0aea0:0x500a098000000001:0x500a098100000001"
    assert prio.priority("weightedpath", "sdc", "wwn 0x200100e08ba0aea0:0x210100e08ba0aea0:.*:.* 12") == 12


@pytest.mark.parametrize(
    ("page", "serial"),
    [
        (bytes([0, 0x80, 0, 6]) + b"AB12  ", "AB12"),
        (bytes([0, 0x80, 0, 4]) + b"AB12XYZ", "AB12"),           # the page length bounds the field
        (bytes([0, 0x80, 0, 6]) + b"AB\0CD ", "AB"),             # a C string ends at a NUL
        (bytes([0, 0x83, 0, 4]) + b"AB12", ""),                  # not page 80h
        (b"\x00\x80", ""),
        (bytes([0, 0x80, 1, 0]) + b"S" * 256, "S" * 127),        # at most 127 bytes kept
    ],
)
def test_unit_serial(tree, page, serial):
    tree.disk("sdb", "8:16", "3600a")
    (tree.sys / "devices/platform/host3/session3/target3:0:0/3:0:0:1/vpd_pg80").write_bytes(page)
    assert sysinfo.unit_serial("sdb") == serial


# --- path_latency -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "parsed"),
    [
        ("io_num=20 base_num=10", LatencyArgs(20, 10.0, False)),
        ("base_num=2 io_num=200", LatencyArgs(200, 2.0, False)),
        ("io_num=50 base_num=1.1", LatencyArgs(50, 1.1, False)),
        ("io_num=50 base_num=1.5e0", LatencyArgs(50, 1.5, False)),
        ("io_num=50 base_num=0x2", LatencyArgs(50, 2.0, False)),      # strtod reads hex floats
        ("io_num=50x base_num=3abc", LatencyArgs(50, 3.0, False)),    # leading numbers kept, as C reads them
        ("\tio_num=30\t\tbase_num=4  extra words", LatencyArgs(30, 4.0, False)),
        ("io_num=4294967316 base_num=2", LatencyArgs(20, 2.0, False)),  # (int)strtoul wraps to 32 bits
    ],
)
def test_latency_args(args, parsed):
    assert prio_rules.parse_latency_args(args) == parsed


@pytest.mark.parametrize(
    "args",
    [
        "",
        "io_num=50",                          # both are needed
        "base_num=5",
        "io_num=50 io_num=60",
        "io_num=19 base_num=5",               # io_num within [20, 200]
        "io_num=201 base_num=5",
        "io_num=-50 base_num=5",
        "io_num=abc base_num=5",              # no digits: 0
        "io_num=50 base_num=1.09",            # base_num within [1.1, 10]
        "io_num=50 base_num=10.5",
        "io_num=50 base_num=nan",
        "io_num=50 base_num=inf",
        "io_num=50 base_num=1e999",
        "io_num= base_num=5",                 # "io_num=" alone is not the word
        "foo io_num=50 base_num=5",           # only the first two words are read
        "io_num=50 foo base_num=5",
        "IO_NUM=50 base_num=5",
    ],
)
def test_latency_malformed_args_give_the_defaults(args):
    parsed = prio_rules.parse_latency_args(args)
    assert parsed == LatencyArgs(100, 10 ** 0.25, True)


@pytest.mark.parametrize(
    ("latency_us", "base", "value"),
    [
        (1, 10.0, 8), (0, 10.0, 8),                      # at or below 1 us: the top rank
        (10, 10.0, 7), (100, 10.0, 6), (150, 10.0, 5), (1000, 10.0, 5), (9999, 10.0, 4),
        (10_000_000, 10.0, 1), (99_999_999, 10.0, 0), (100_000_000, 10.0, 0), (10**9, 10.0, 0),
        (1, 10 ** 0.25, 32), (100, 10 ** 0.25, 24), (1000, 10 ** 0.25, 20),  # default base: 4 ranks per 10x
        (1, 1.1, 193), (1000, 2.0, 16),
    ],
)
def test_latency_value(latency_us, base, value):
    assert prio_rules.latency_value([latency_us] * 20, 20, base) == value


def test_latency_value_is_the_mean_of_logarithms():
    # 10 us and 1000 us: the geometric mean is 100 us
    assert prio_rules.latency_value([10] * 10 + [1000] * 10, 20, 10.0) == 6
    # a 0 us read adds nothing to the sum but counts in the mean, as upstream
    assert prio_rules.latency_value([0] * 10 + [10_000] * 10, 20, 10.0) == 6


@pytest.fixture
def direct(tmp_path, monkeypatch):
    """The disk's O_DIRECT opens and reads redirected: a 4096-byte file stands for the disk, reads go
    through `reads` (a function of the fd and buffer, or None for a plain read)."""
    disk = tmp_path / "sdb"
    disk.write_bytes(b"\xab" * 4096)
    state: dict = {"read": None, "opened": []}

    def open_direct(devnode):
        state["opened"].append(devnode)
        return os.open(disk, os.O_RDONLY | os.O_CLOEXEC)

    def read_block(fd, buf):
        return (state["read"] or (lambda fd, buf: os.preadv(fd, [buf], 0)))(fd, buf)

    monkeypatch.setattr(prio_rules, "_open_direct", open_direct)
    monkeypatch.setattr(prio_rules, "_read_block", read_block)
    return state


def test_latency_reads_the_first_block_io_num_times(direct):
    count = []
    direct["read"] = lambda fd, buf: count.append(1) or os.preadv(fd, [buf], 0)
    lat = prio_rules.measure_latencies("sdb", 25, 5.0)
    assert lat is not None and len(lat) == 25 and len(count) == 25 and all(us >= 0 for us in lat)
    assert direct["opened"] == ["/dev/sdb"]
    value = prio.priority("path_latency", "sdb", "io_num=20 base_num=10", 5.0)
    assert 5 <= value <= 8  # a file read: well under 1 ms


def test_latency_short_or_failed_read_is_undefined(direct):
    direct["read"] = lambda fd, buf: 512
    assert prio.priority("path_latency", "sdb", "io_num=20 base_num=10") == prio.PRIO_UNDEF
    assert "sdb" not in prio_rules._reading  # the reader is done: the next measure is not refused for it

    def fail(fd, buf):
        raise OSError(5, "I/O error")

    direct["read"] = fail
    assert prio.priority("path_latency", "sdb", "io_num=20 base_num=10") == prio.PRIO_UNDEF
    assert "sdb" not in prio_rules._reading


def test_latency_device_that_cannot_be_opened_is_undefined(monkeypatch):
    def refuse(devnode):
        raise OSError(22, "Invalid argument")  # e.g. no O_DIRECT

    monkeypatch.setattr(prio_rules, "_open_direct", refuse)
    assert prio_rules.prio_path_latency("sdb", "io_num=20 base_num=10") == prio.PRIO_UNDEF
    assert "sdb" not in prio_rules._reading


def test_latency_waits_at_most_the_timeout_per_read_and_a_hung_disk_is_not_read_again(direct):
    release = threading.Event()
    calls = []

    def hang_on_third(fd, buf):
        calls.append(1)
        if len(calls) == 3:
            release.wait(10)
        return os.preadv(fd, [buf], 0)

    direct["read"] = hang_on_third
    start = time.monotonic()
    assert prio.priority("path_latency", "sdb", "io_num=20 base_num=10", 0.2) == prio.PRIO_UNDEF
    assert time.monotonic() - start < 1.5
    # the third read still hangs: another measure of the disk fails at once, without a new thread
    before = threading.active_count()
    assert prio_rules.measure_latencies("sdb", 20, 0.2) is None and threading.active_count() == before
    release.set()
    deadline = time.monotonic() + 5
    while "sdb" in prio_rules._reading and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "sdb" not in prio_rules._reading and len(calls) == 3  # stopped after the hung read returned
    direct["read"] = None
    assert prio_rules.measure_latencies("sdb", 20, 1.0) is not None


def test_latency_total_time_is_bounded_by_io_num_times_timeout(direct):
    direct["read"] = lambda fd, buf: time.sleep(0.15) or os.preadv(fd, [buf], 0)
    start = time.monotonic()
    assert prio_rules.measure_latencies("sdb", 20, 0.1) is None  # each read outlives its 0.1 s
    assert time.monotonic() - start < 0.5
    deadline = time.monotonic() + 5
    while "sdb" in prio_rules._reading and time.monotonic() < deadline:
        time.sleep(0.01)


# --- iet ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "ip"),
    [
        ("preferredip=10.11.12.13", "10.11.12.13"),
        ("preferredip= 192.168.1.10 ignored", "192.168.1.10"),
        ("preferredip=fe80::1234", "fe80::1234"),   # any word of 8 characters or more is taken
    ],
)
def test_iet_args(args, ip):
    assert prio_rules.parse_iet_args(args) == ip


@pytest.mark.parametrize("args", ["", "preferredip=", "preferredip=1.2.3.4", "preferredip=1.2.3.4 ",
                                  " preferredip=10.11.12.13", "preferredIP=10.11.12.13", "10.11.12.13"])
def test_iet_malformed_args(args):
    assert prio_rules.parse_iet_args(args) is None


@pytest.mark.parametrize(
    ("link", "ip", "match"),
    [
        ("ip-10.11.12.13:3260-iscsi-iqn.2001-04.com.example:t1-lun-1", "10.11.12.13", True),
        ("ip-10.11.12.14:3260-iscsi-iqn.2001-04.com.example:t1-lun-1", "10.11.12.13", False),
        # upstream compares the link's address as a prefix of the preferred one
        ("ip-10.11.12.1:3260-iscsi-iqn.2001-04.com.example:t1-lun-1", "10.11.12.13", True),
        ("ip-10.11.12.13:3260-iscsi-iqn.2001-04.com.example:t1-lun-1", "10.11.12.1", False),
        ("pci-0000:00:1f.2-ata-1", "10.11.12.13", False),
        ("ip-[fe80::1]:3260-iscsi-iqn.x-lun-0", "fe80::1", False),   # only dotted quads are read
    ],
)
def test_iet_matches(link, ip, match):
    assert prio_rules.iet_matches(link, ip) is match


def _udev_entry(tree, dev_t, *links):
    lines = ["S:disk/by-id/wwn-0x6001405"] + [f"S:disk/by-path/{name}" for name in links] + ["E:DEVTYPE=disk"]
    (tree.db / f"b{dev_t}").write_text("\n".join(lines) + "\n")


def test_iet_values_from_the_udev_database(tree):
    tree.disk("sdb", "8:16", "3600a")
    _udev_entry(tree, "8:16", "ip-10.0.0.1:3260-iscsi-iqn.2003-01.org.linux-iscsi.t:sn.1-lun-0")
    tree.disk("sdc", "8:32", "3600a")
    _udev_entry(tree, "8:32", "ip-10.0.1.1:3260-iscsi-iqn.2003-01.org.linux-iscsi.t:sn.1-lun-0")
    assert prio_rules.by_path_links("sdb") == \
        ["ip-10.0.0.1:3260-iscsi-iqn.2003-01.org.linux-iscsi.t:sn.1-lun-0"]
    assert prio.priority("iet", "sdb", "preferredip=10.0.0.1") == 20
    assert prio.priority("iet", "sdc", "preferredip=10.0.0.1") == 10
    assert prio.priority("iet", "sdb", "preferredip=10.0.1") == 0        # too short
    assert prio.priority("iet", "sdb", "") == 0


def test_iet_without_a_udev_entry_scans_dev_disk_by_path(tree, tmp_path, monkeypatch):
    tree.disk("sdb", "8:16", "3600a", initialized=False)
    devdir = tmp_path / "dev"
    by_path = devdir / "disk" / "by-path"
    by_path.mkdir(parents=True)
    (by_path / "ip-10.0.0.1:3260-iscsi-iqn.x-lun-0").symlink_to("../../sdba")      # another disk
    (by_path / "ip-10.0.0.2:3260-iscsi-iqn.x-lun-0").symlink_to("../../sdb")
    (by_path / "ip-10.0.0.2:3260-iscsi-iqn.x-lun-0-part1").symlink_to("../../sdb1")
    monkeypatch.setattr(prio_rules, "DEV_DIR", str(devdir))
    assert prio_rules.by_path_links("sdb") == ["ip-10.0.0.2:3260-iscsi-iqn.x-lun-0",
                                               "ip-10.0.0.2:3260-iscsi-iqn.x-lun-0-part1"]
    assert prio_rules.prio_iet("sdb", "preferredip=10.0.0.2") == 20
    assert prio_rules.prio_iet("sdb", "preferredip=10.0.0.1") == 10


def test_iet_with_no_links_at_all(tree, tmp_path, monkeypatch):
    tree.disk("sdb", "8:16", "3600a", initialized=False)
    monkeypatch.setattr(prio_rules, "DEV_DIR", str(tmp_path / "nodev"))
    assert prio_rules.prio_iet("sdb", "preferredip=10.0.0.2") == 10


# --- random -------------------------------------------------------------------------------------------------


def test_random_between_1_and_10():
    seen = {prio.priority("random", "sdb") for _ in range(2000)}
    assert seen == set(range(1, 11))


def test_latency_constants_match_upstream():
    assert math.isclose(prio_rules.BASE_NUM_DEFAULT, 1.77827941004)
    assert (prio_rules.IO_NUM_RANGE, prio_rules.BASE_NUM_RANGE, prio_rules.IO_NUM_DEFAULT) == \
        ((20, 200), (1.1, 10.0), 100)
