import pytest
from hypothesis import given
from hypothesis import strategies as st

from pymultipathd.paths.grouping import POLICIES, Member, best_group, group_members, group_priority


def M(n, prio=0, usable=True, serial="s", node="t"):
    return Member(dev_t=f"8:{n}", prio=prio, usable=usable, serial=serial, node_name=node, dev=f"sd{n}")


def devs(groups):
    return [[m.dev_t for m in g] for g in groups]


def test_failover_one_path_per_group_best_first():
    ms = [M(0, 10), M(16, 50), M(32, 50, usable=False)]
    assert devs(group_members(ms, "failover")) == [["8:16"], ["8:0"], ["8:32"]]


def test_multibus_one_group():
    assert devs(group_members([M(0), M(16)], "multibus")) == [["8:0", "8:16"]]
    assert group_members([], "multibus") == []


def test_group_by_prio_alua_like():
    ms = [M(0, 10), M(16, 50), M(32, 10), M(48, 50)]
    assert devs(group_members(ms, "group_by_prio")) == [["8:16", "8:48"], ["8:0", "8:32"]]


def test_group_by_serial_and_node_name():
    ms = [M(0, serial="a", node="x"), M(16, serial="b", node="x"), M(32, serial="a", node="y")]
    assert devs(group_members(ms, "group_by_serial")) == [["8:0", "8:32"], ["8:16"]]
    assert devs(group_members(ms, "group_by_node_name")) == [["8:0", "8:16"], ["8:32"]]


def test_failed_paths_do_not_count_towards_priority():
    assert group_priority([M(0, 50, usable=False), M(16, 10)]) == 10
    assert group_priority([M(0, 50, usable=False)]) == 0
    # equal priority: the group with more usable paths first
    ms = [M(0, 10, serial="a"), M(16, 10, serial="b"), M(32, 10, serial="b")]
    assert devs(group_members(ms, "group_by_serial"))[0] == ["8:16", "8:32"]


def test_best_group():
    groups = [[M(0, 10)], [M(16, 50)]]
    assert best_group(groups) == 2
    assert best_group([]) == 0
    assert best_group([[M(0, 10)], [M(16, 10)]]) == 1  # a tie keeps the current order


def test_unknown_policy():
    with pytest.raises(ValueError, match="unknown path_grouping_policy 'bogus'"):
        group_members([M(0)], "bogus")


members = st.lists(
    st.builds(M, st.integers(0, 255), st.integers(0, 100), st.booleans(), st.sampled_from("abc"),
              st.sampled_from("xyz")),
    max_size=12, unique_by=lambda m: m.dev_t,
)


@given(members, st.sampled_from(POLICIES))
def test_every_path_in_exactly_one_group_and_groups_sorted(ms, policy):
    groups = group_members(ms, policy)
    flat = [m.dev_t for g in groups for m in g]
    assert sorted(flat) == sorted(m.dev_t for m in ms)
    assert all(groups)
    prios = [group_priority(g) for g in groups]
    assert prios == sorted(prios, reverse=True)
