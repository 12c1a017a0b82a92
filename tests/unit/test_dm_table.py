"""Multipath/linear table building and parsing, status parsing, partition map names (all pure).

The partition-table parser has its own tests: test_partition_tables.py."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pymultipathd.dm.maps import _parent_of, part_name, part_uuid
from pymultipathd.dm.table import (
    Features,
    GroupStatus,
    LinearTable,
    MultipathStatus,
    MultipathTable,
    PathGroup,
    PathSpec,
    PathStatus,
    TableError,
    TargetLine,
    is_queueing,
    parse_features,
    parse_linear_line,
    parse_multipath_line,
    parse_multipath_params,
    parse_multipath_status,
    parse_multipath_status_line,
    parse_target_line,
)

# --- generated maps ----------------------------------------------------------------------------------

devs = st.builds(lambda a, b: f"{a}:{b}", st.integers(0, 4095), st.integers(0, 1048575))
numbers = st.integers(0, 10**6).map(str)
selectors = st.sampled_from(["service-time", "round-robin", "queue-length", "historical-service-time"])
# Feature words this module does not model: any word that is not a known keyword or a number.
other_words = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(
    lambda w: w not in ("queue_if_no_path", "retain_attached_hw_handler", "pg_init_retries",
                        "pg_init_delay_msecs", "queue_mode")
)
features = st.builds(
    Features,
    queue_if_no_path=st.booleans(),
    queue_mode=st.none() | st.sampled_from(["bio", "rq", "mq"]),
    retain_attached_hw_handler=st.booleans(),
    pg_init_retries=st.none() | st.integers(0, 50),
    pg_init_delay_msecs=st.none() | st.integers(0, 60000),
    other=st.lists(other_words, max_size=3).map(tuple),
)


@st.composite
def groups(draw):
    nargs = draw(st.integers(0, 3))
    paths = draw(st.lists(st.builds(PathSpec, devs, st.lists(numbers, min_size=nargs, max_size=nargs)
                                    .map(tuple)), min_size=1, max_size=8))
    return PathGroup(tuple(paths), draw(selectors), tuple(draw(st.lists(numbers, max_size=2))))


@st.composite
def tables(draw):
    gs = tuple(draw(st.lists(groups(), max_size=5)))
    hwh = draw(st.none() | st.sampled_from(["alua", "emc", "rdac", "hp_sw"]))
    hargs = tuple(draw(st.lists(numbers, max_size=2))) if hwh else ()
    initial = draw(st.integers(1, len(gs))) if gs else 0
    return MultipathTable(draw(st.integers(0, 2**50)), gs, draw(features), hwh, hargs, initial)


@given(tables())
def test_table_round_trip(t):
    line = t.line()
    assert parse_multipath_line(line) == t
    assert parse_multipath_params(t.params(), t.size) == t
    # The line is what the kernel sees: counts first, so word count matches what the counts say.
    assert parse_target_line(line) == TargetLine(0, t.size, "multipath", t.params())


@given(tables())
def test_every_truncation_of_a_table_is_an_error(t):
    words = t.params().split()
    for n in range(len(words)):
        with pytest.raises(TableError):
            parse_multipath_params(" ".join(words[:n]))


@st.composite
def statuses(draw):
    gs = []
    for _ in range(draw(st.integers(0, 4))):
        ninfo = draw(st.integers(0, 2))
        paths = draw(st.lists(st.builds(PathStatus, devs, st.booleans(), st.integers(0, 1000),
                                        st.lists(numbers, min_size=ninfo, max_size=ninfo).map(tuple)),
                              min_size=1, max_size=6))
        gs.append(GroupStatus(draw(st.sampled_from("AED")), tuple(paths), tuple(draw(st.lists(numbers,
                                                                                             max_size=2)))))
    nxt = draw(st.integers(1, len(gs))) if gs else 0
    hwh = draw(st.sampled_from([(), ("alua",)]))
    return MultipathStatus(tuple(gs), nxt, draw(st.booleans()), draw(st.integers(0, 9)), hwh)


@given(statuses())
def test_status_round_trip(s):
    assert parse_multipath_status(s.params()) == s


def test_build_upstream_example():
    t = MultipathTable(131072, (PathGroup((PathSpec("8:0"), PathSpec("8:16"))),),
                       Features(queue_if_no_path=True))
    assert t.line() == "0 131072 multipath 1 queue_if_no_path 0 1 1 service-time 0 2 1 8:0 1 8:16 1"


def test_feature_order_matches_kernel_output():
    f = Features(queue_if_no_path=True, queue_mode="bio", retain_attached_hw_handler=True,
                 pg_init_retries=50, pg_init_delay_msecs=100)
    assert f.words() == ["queue_if_no_path", "pg_init_retries", "50", "pg_init_delay_msecs", "100",
                         "retain_attached_hw_handler", "queue_mode", "bio"]


# Table lines as `dmsetup table` prints them on real systems (kernel order, selector-specific arg counts).
REAL_TABLES = {
    "0 209715200 multipath 1 queue_if_no_path 1 alua 2 1 service-time 0 2 2 8:16 1 1 8:48 1 1 "
    "service-time 0 2 2 8:32 1 1 8:64 1 1": (2, ("8:16", "8:48", "8:32", "8:64"), "alua", True),
    "0 41943040 multipath 0 0 1 1 round-robin 0 4 1 8:16 1000 8:32 1000 8:48 1000 8:64 1000":
        (1, ("8:16", "8:32", "8:48", "8:64"), None, False),
    "0 104857600 multipath 4 queue_if_no_path pg_init_retries 50 retain_attached_hw_handler 1 emc 2 1 "
    "round-robin 0 2 1 65:16 1 66:48 1 round-robin 0 2 1 8:32 1 8:112 1":
        (2, ("65:16", "66:48", "8:32", "8:112"), "emc", True),
}


@pytest.mark.parametrize("line", REAL_TABLES)
def test_parse_real_tables(line):
    ngroups, paths, hwh, qinp = REAL_TABLES[line]
    t = parse_multipath_line(line)
    assert len(t.groups) == ngroups
    assert tuple(t.devices()) == paths
    assert t.hwhandler == hwh
    assert t.features.queue_if_no_path is qinp
    assert t.line() == line  # kernel output is already in canonical form


def test_parse_real_table_features():
    t = parse_multipath_line(next(iter(k for k in REAL_TABLES if "emc" in k)))
    assert t.features.pg_init_retries == 50 and t.features.retain_attached_hw_handler
    t = parse_multipath_line("0 2097152 multipath 3 queue_if_no_path queue_mode mq 0 1 1 service-time 0 1 2 "
                             "8:0 1 1")
    assert t.features.queue_mode == "mq" and t.groups[0].paths[0].args == ("1", "1")


def test_parse_real_status_service_time():
    s = parse_multipath_status_line("0 209715200 multipath 2 0 0 0 2 1 A 0 2 2 8:16 A 0 0 1 8:48 A 0 0 1 "
                                    "E 0 2 2 8:32 A 0 0 1 8:64 F 3 0 1")
    assert [g.state for g in s.groups] == ["A", "E"]
    assert s.next_group == 1 and s.active_group() == 1
    assert s.path("8:64") == PathStatus("8:64", False, 3, ("0", "1"))
    assert s.active_paths() == 3 and not s.queue_io and s.pg_init_count == 0


def test_parse_real_status_round_robin_and_disabled_group():
    s = parse_multipath_status("2 0 0 0 2 2 D 0 2 0 8:16 F 1 8:32 F 1 A 0 2 0 8:48 A 0 8:64 A 0")
    assert [g.state for g in s.groups] == ["D", "A"]
    assert s.active_group() == 2
    assert [p.active for p in s.groups[0].paths] == [False, False]
    assert s.groups[1].paths[0].selector_info == ()


def test_parse_old_kernel_status_with_one_feature():
    s = parse_multipath_status("1 0 0 2 1 A 0 1 0 8:16 A 0 E 0 1 0 8:32 A 0")
    assert not s.queue_io and s.pg_init_count == 0 and len(s.groups) == 2


def test_parse_status_pg_init_and_hwhandler():
    s = parse_multipath_status("2 1 3 1 alua 1 1 E 0 1 1 8:16 A 0 0")
    assert s.pg_init_in_progress and s.pg_init_count == 3 and s.hwhandler == ("alua",)
    assert s.active_group() is None


def test_queueing_state():
    t = parse_multipath_line("0 8 multipath 1 queue_if_no_path 0 1 1 round-robin 0 1 1 8:0 1")
    all_failed = parse_multipath_status("2 0 0 0 1 1 E 0 1 0 8:0 F 1")
    ok = parse_multipath_status("2 0 0 0 1 1 A 0 1 0 8:0 A 0")
    assert is_queueing(t, all_failed) and not is_queueing(t, ok)
    no_queue = parse_multipath_line("0 8 multipath 0 0 1 1 round-robin 0 1 1 8:0 1")
    assert not is_queueing(no_queue, all_failed)


@pytest.mark.parametrize(
    "params, fragment",
    [
        ("", "feature count"),
        ("1 queue_if_no_path", "hardware handler arg count"),
        ("x 0 0 0", "feature count"),
        ("0 0 1 1 round-robin 0 2 1 8:0 1", "path device"),
        ("0 0 1 1 round-robin 0 1 1 8:0 1 extra", "end of line"),
        ("1 pg_init_retries 0 0 0", "pg_init_retries needs"),
    ],
)
def test_bad_tables_name_what_was_expected(params, fragment):
    with pytest.raises(TableError, match=fragment) as e:
        parse_multipath_params(params)
    assert repr(params) in str(e.value) or fragment.endswith("needs")


@pytest.mark.parametrize(
    "params, fragment",
    [
        ("2 0 0 0 1 1 X 0 1 0 8:0 A 0", "group state"),
        ("2 0 0 0 1 1 A 0 1 0 8:0 Z 0", "path state"),
        ("2 0 0 0 1 1 A 0 1 0 8:0 A x", "fail count"),
    ],
)
def test_bad_status(params, fragment):
    with pytest.raises(TableError, match=fragment):
        parse_multipath_status(params)


def test_build_rejects_invalid_descriptions():
    g = PathGroup((PathSpec("8:0"),))
    with pytest.raises(TableError, match="initial group"):
        MultipathTable(8, (g,), initial_group=2).params()
    with pytest.raises(TableError, match="no paths"):
        MultipathTable(8, (PathGroup(()),)).params()
    with pytest.raises(TableError, match="disagree"):
        MultipathTable(8, (PathGroup((PathSpec("8:0", ("1",)), PathSpec("8:16", ()))),)).params()
    with pytest.raises(TableError, match="queue_mode"):
        MultipathTable(8, (g,), Features(queue_mode="fast")).params()
    with pytest.raises(TableError, match="single non-empty word"):
        MultipathTable(8, (PathGroup((PathSpec("8:0 8:1"),)),)).params()
    with pytest.raises(TableError, match="without a handler"):
        MultipathTable(8, (g,), hwhandler_args=("1",)).params()


def test_parse_features_unknown_words_kept():
    assert parse_features(("queue_if_no_path", "no_partitions")).other == ("no_partitions",)


def test_target_line_errors():
    with pytest.raises(TableError, match="start"):
        parse_target_line("multipath 0 0")
    with pytest.raises(TableError, match="not multipath"):
        parse_multipath_line("0 8 linear 8:0 0")


@given(st.integers(1, 2**40), devs, st.integers(0, 2**40))
def test_linear_round_trip(size, dev, off):
    t = LinearTable(size, dev, off)
    assert parse_linear_line(t.line()) == t


def test_linear_rejects():
    with pytest.raises(TableError):
        LinearTable(0, "8:0", 0).line()
    with pytest.raises(TableError, match="offset"):
        parse_linear_line("0 8 linear 8:0 x")


# --- partition map names -----------------------------------------------------------------------------


def test_partition_names_and_uuids():
    assert part_name("mpatha", 1) == "mpatha-part1"
    assert part_name("mpatha", 2, "p") == "mpathap2"
    assert part_uuid(3, "mpath-36001405abc") == "part3-mpath-36001405abc"
    assert _parent_of("part3-mpath-36001405abc") == (3, "mpath-36001405abc")
    assert _parent_of("mpath-36001405abc") is None and _parent_of("partx-mpath-1") is None
