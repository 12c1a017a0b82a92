"""DaemonState.path_by_dev_t stays right however `paths` changes; set_paths keeps a map's classifier view."""

from pymultipathd.classify import MapFacts, PathFacts
from pymultipathd.policy.state import DaemonState, MapState, PathState


def _path(dev: str, dev_t: str) -> PathState:
    return PathState(dev=dev, dev_t=dev_t, facts=PathFacts(dev=dev, dev_t=dev_t))


def test_lookup_follows_additions_removals_and_a_reused_name():
    st = DaemonState()
    st.paths["sda"] = _path("sda", "8:0")
    assert st.path_by_dev_t("8:0").dev == "sda"
    st.paths["sdb"] = _path("sdb", "8:16")  # added behind the index's back
    assert st.path_by_dev_t("8:16").dev == "sdb"
    del st.paths["sda"]
    assert st.path_by_dev_t("8:0") is None
    st.paths["sdb"] = _path("sdb", "8:32")  # the name now stands for another device
    assert st.path_by_dev_t("8:16") is None
    assert st.path_by_dev_t("8:32").dev == "sdb"


def test_set_paths_rebuilds_the_map_facts():
    st = DaemonState()
    m = MapState(name="mpatha", wwid="3600a")
    st.set_paths(m, ["sda", "sdb"])
    assert m.paths == ["sda", "sdb"] and m.facts == MapFacts("mpatha", "mpath-3600a", ("sda", "sdb"))
    st.set_paths(m, ["sdb"])
    assert m.facts.paths == ("sdb",)


def test_map_of_wwid_follows_every_change_of_the_table():
    import pytest

    st = DaemonState()
    a, b = MapState(name="mpatha", wwid="3600a"), MapState(name="mpathb", wwid="3600b")
    st.maps["mpatha"] = a
    st.maps["mpathb"] = b
    assert st.map_of_wwid("3600a") is a and st.map_of_wwid("3600b") is b and st.map_of_wwid("3600c") is None
    st.forget_map(a)  # pop
    assert st.map_of_wwid("3600a") is None
    del st.maps["mpathb"]
    assert st.map_of_wwid("3600b") is None
    c = MapState(name="mpathb", wwid="3600c")  # a name used again for another WWID
    st.maps["mpathb"] = b
    st.maps["mpathb"] = c
    assert st.map_of_wwid("3600b") is None and st.map_of_wwid("3600c") is c
    st.maps["mpathb"] = c  # the same map again (a re-read): still found, indexed once
    assert st.map_of_wwid("3600c") is c and st.maps.by_wwid["3600c"] == ["mpathb"]
    st.maps.clear()
    assert st.map_of_wwid("3600c") is None
    with pytest.raises(TypeError):
        st.maps.update({"mpathd": MapState(name="mpathd", wwid="3600d")})  # would pass the index by


def test_two_maps_of_one_wwid_are_found_until_both_are_gone():
    """One map per WWID is the rule; if the kernel holds two (made by hand), a lookup finds one of them
    while either is left, as the scan it replaces did."""
    st = DaemonState()
    first, second = MapState(name="mpatha", wwid="3600a"), MapState(name="manual", wwid="3600a")
    st.maps["mpatha"] = first
    st.maps["manual"] = second
    assert st.map_of_wwid("3600a") is first
    st.forget_map(first)
    assert st.map_of_wwid("3600a") is second
    st.forget_map(second)
    assert st.map_of_wwid("3600a") is None


def test_a_state_made_from_a_plain_dict_still_finds_maps():
    m = MapState(name="mpatha", wwid="3600a")
    assert DaemonState(maps={"mpatha": m}).map_of_wwid("3600a") is m
