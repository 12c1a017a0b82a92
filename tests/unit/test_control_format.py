import json

import pytest

from pymultipathd.classify import PathFacts
from pymultipathd.control import format as fmt
from pymultipathd.dm import table as dmt
from pymultipathd.policy.state import DaemonState, MapState, PathState

TABLE = "0 131072 multipath 1 queue_if_no_path 1 alua 2 1 service-time 0 1 1 8:0 1 service-time 0 1 1 8:16 1"
STATUS = "2 0 0 0 2 1 A 0 1 2 8:0 A 0 0 1 E 0 1 2 8:16 F 1 0 1"


def state():
    st = DaemonState()
    for dev, minor, hcil, chk in (("sda", 0, "6:0:0:0", "up"), ("sdb", 16, "7:0:0:0", "down")):
        f = PathFacts(dev=dev, dev_t=f"8:{minor}", wwid="3600abc", vendor="LIO-ORG", product="disk0")
        st.paths[dev] = PathState(dev=dev, dev_t=f"8:{minor}", hcil=hcil, chk_state=chk, prio=50,
                                  map="mpatha",
                                  facts=f, size=131072, next_check=10.0, interval=5.0)
    m = MapState(name="mpatha", wwid="3600abc", dm_dev="dm-0", dev_t="253:0", vendor="LIO-ORG",
                 product="disk0", paths=["sda", "sdb"])
    m.table = dmt.parse_multipath_line(TABLE)
    m.status = dmt.parse_multipath_status(STATUS)
    st.maps["mpatha"] = m
    return st


def test_human_size_like_upstream():
    assert fmt.human_size(131072) == "64M"
    assert fmt.human_size(3145728) == "1.5G"
    assert fmt.human_size(2 * 1024 * 1024 * 1024 * 10) == "10T"


def test_topology_matches_multipath_ll_layout():
    out = fmt.topology(state(), state().maps["mpatha"])
    assert out == (
        "mpatha (3600abc) dm-0 LIO-ORG,disk0\n"
        "size=64M features='1 queue_if_no_path' hwhandler='1 alua' wp=rw\n"
        "|-+- policy='service-time 0' prio=50 status=active\n"
        "| `- 6:0:0:0 sda 8:0 active ready running\n"
        "`-+- policy='service-time 0' prio=0 status=enabled\n"
        "  `- 7:0:0:0 sdb 8:16 failed faulty running\n"
    )


def test_show_paths_default_columns():
    out = fmt.show_paths(state(), now=7.5).splitlines()
    assert out[0].split() == ["hcil", "dev", "dev_t", "pri", "dm_st", "chk_st", "dev_st", "next_check"]
    assert out[1].split()[:7] == ["6:0:0:0", "sda", "8:0", "50", "active", "ready", "running"]
    assert out[1].split()[7:] == ["XXXXX.....", "2/5"]
    assert out[2].split()[:7] == ["7:0:0:0", "sdb", "8:16", "50", "failed", "faulty", "running"]
    # columns line up: every row as wide as the header up to the last column
    assert len({line.index("sd") for line in out[1:]}) == 1


def test_raw_format_and_unknown_wildcard_kept():
    assert fmt.show_paths(state(), "%d %w %q", raw=True) == "sda 3600abc %q\nsdb 3600abc %q\n"
    assert fmt.show_maps(state(), "%n %d %N %Q", raw=True) == "mpatha dm-0 2 on\n"


def test_show_maps_default_and_empty():
    assert fmt.show_maps(state()).split() == ["name", "sysfs", "uuid", "mpatha", "dm-0", "3600abc"]
    assert fmt.show_maps(DaemonState()) == ""
    assert fmt.show_paths(DaemonState()) == ""


def test_json_has_upstream_keys():
    doc = json.loads(fmt.maps_json(state()))
    assert doc["major_version"] == 0 and doc["map_count"] == 1
    m = doc["maps"][0]
    assert {"name", "uuid", "sysfs", "paths", "features", "hwhandler", "path_groups"} <= set(m)
    assert m["path_groups"][0]["paths"][0]["chk_st"] == "ready"
    assert m["path_groups"][1]["paths"][0]["dm_st"] == "failed"
    one = json.loads(fmt.maps_json(state(), [state().maps["mpatha"]], single=True))
    assert one["map"]["name"] == "mpatha"


def test_wildcards_lists_letters():
    text = fmt.wildcards()
    assert "%n  name" in text and "%d  dev" in text and "%T  chk_st" in text


@pytest.mark.parametrize(("hcil", "want"), [
    ("2:0:0:0", "0x0000000000000000"), ("2:0:0:1", "0x0001000000000000"),
    ("3:0:1:16385", "0x4001000000000000"),        # flat space addressing of LUN 1 (0x4001)
    ("3:0:0:65536", "0x0000000100000000"),        # the second 16-bit word
    ("#:#:#:#", "0xffffffffffffffff"),            # not known
])
def test_lun_hex_is_the_kernels_scsi_lun_structure(hcil, want):
    from pymultipathd.control import format as fmt

    assert fmt.lun_hex(hcil) == want


def test_host_adapter_is_an_iscsi_hosts_address_or_the_pci_device(tmp_path, monkeypatch):
    from pymultipathd.paths import sysinfo

    root = tmp_path / "sys"
    iscsi = root / "devices/platform/host3/session1/target3:0:0/3:0:0:1"
    fc = root / "devices/pci0000:00/0000:00:04.0/host5/rport-5:0-2/target5:0:0/5:0:0:7"
    for dev, name in ((iscsi, "sdb"), (fc, "sdc")):
        (dev / "block" / name).mkdir(parents=True)
        (root / "block").mkdir(exist_ok=True)
        (root / "block" / name).symlink_to(dev / "block" / name)
        (dev / "block" / name / "device").symlink_to(dev)
    (root / "class/iscsi_host/host3").mkdir(parents=True)
    (root / "class/iscsi_host/host3/ipaddress").write_text("192.0.2.10\n")
    from pymultipathd import locations

    before = locations.install(locations.Locations.from_env({"PYMULTIPATH_SYSFS": str(root)}))
    try:
        assert sysinfo.host_adapter("sdb") == "192.0.2.10"
        assert sysinfo.host_adapter("sdc") == "0000:00:04.0"
        assert sysinfo.host_adapter("sdz") is None
    finally:
        locations.install(before)
