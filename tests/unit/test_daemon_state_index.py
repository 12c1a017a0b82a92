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
