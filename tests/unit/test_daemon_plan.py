import pytest

from pymultipathd.classify import PathFacts
from pymultipathd.config import parse_text
from pymultipathd.policy import plan
from pymultipathd.policy.state import PathState


def P(dev, minor, prio=1, chk="up", size=131072, node="t1"):
    return PathState(dev=dev, dev_t=f"8:{minor}", facts=PathFacts(dev=dev, dev_t=f"8:{minor}", wwid="w1"),
                     prio=prio, chk_state=chk, size=size, node_name=node)


def resolver(text="", vendor="ACME"):
    cfg = parse_text(text)
    return lambda kw: cfg.resolve(kw, wwid="w1", vendor=vendor, product="disk")


def test_default_table_is_upstream_shape():
    t = plan.build_table([P("sda", 0), P("sdb", 16)], resolver())
    # failover: one group per path, service-time 0, repeat 1, no queueing (no_path_retry fail)
    assert t.line() == ("0 131072 multipath 0 0 2 1 service-time 0 1 1 8:0 1 service-time 0 1 1 8:16 1")


@pytest.mark.parametrize(
    ("conf", "queue"),
    [
        ("defaults {\n no_path_retry queue\n}\n", True),
        ("defaults {\n no_path_retry 5\n}\n", True),
        ("defaults {\n no_path_retry fail\n features \"1 queue_if_no_path\"\n}\n", False),
        ("defaults {\n features \"1 queue_if_no_path\"\n}\n", False),  # default no_path_retry fail wins
    ],
)
def test_no_path_retry_decides_queueing(conf, queue):
    assert plan.queue_if_no_path(resolver(conf)) is queue
    t = plan.build_table([P("sda", 0)], resolver(conf))
    assert t.features.queue_if_no_path is queue


def test_multibus_alua_handler_and_selector():
    conf = ('defaults {\n path_grouping_policy multibus\n path_selector "round-robin 0"\n'
            ' hardware_handler "1 alua"\n rr_min_io_rq 4\n}\n')
    t = plan.build_table([P("sda", 0), P("sdb", 16)], resolver(conf))
    assert t.line() == "0 131072 multipath 0 1 alua 1 1 round-robin 0 2 1 8:0 4 8:16 4"


def test_group_by_prio_orders_best_first():
    conf = "defaults {\n path_grouping_policy group_by_prio\n}\n"
    t = plan.build_table([P("sda", 0, prio=10), P("sdb", 16, prio=50)], resolver(conf))
    assert [[p.dev for p in g.paths] for g in t.groups] == [["8:16"], ["8:0"]]


def test_size_mismatch_and_empty_are_refused():
    with pytest.raises(ValueError, match="disagree on size"):
        plan.build_table([P("sda", 0), P("sdb", 16, size=8)], resolver())
    with pytest.raises(ValueError, match="at least one path"):
        plan.build_table([], resolver())


def test_needs_reload_ignores_order_within_group_but_not_membership():
    r = resolver("defaults {\n path_grouping_policy multibus\n}\n")
    a = plan.build_table([P("sda", 0), P("sdb", 16)], r)
    b = plan.build_table([P("sdb", 16), P("sda", 0)], r)
    c = plan.build_table([P("sda", 0)], r)
    assert not plan.needs_reload(a, b)
    assert plan.needs_reload(a, c)
    assert plan.needs_reload(None, a)
    # queueing alone is switched by a message on the live map, never by a reload
    assert not plan.needs_reload(a, plan.build_table([P("sda", 0), P("sdb", 16)], r, queueing=True))


def test_failback_target_follows_current_priorities():
    r = resolver()
    paths = [P("sda", 0, prio=10), P("sdb", 16, prio=50)]
    t = plan.build_table(paths, r)          # sdb's group first
    assert plan.failback_target(paths, t) == 1
    paths[1].chk_state = "down"             # the best path died: the other group is best now
    assert plan.failback_target(paths, t) == 2


def test_builtin_lio_entry_gives_alua_groups_and_queueing():
    r = resolver(vendor="LIO-ORG")
    t = plan.build_table([P("sda", 0, prio=50), P("sdb", 16, prio=10)], r)
    assert t.hwhandler == "alua" and t.features.queue_if_no_path  # no_path_retry 12 queues, then fails
    assert [[p.dev for p in g.paths] for g in t.groups] == [["8:0"], ["8:16"]]


def test_followover_only_when_a_group_comes_back_as_a_whole():
    r = resolver("defaults {\n path_grouping_policy group_by_node_name\n}\n")
    paths = [P("sda", 0, node="t1"), P("sdb", 16, node="t1"), P("sdc", 32, node="t2")]
    t = plan.build_table(paths, r)
    assert [len(g.paths) for g in t.groups] == [2, 1]
    # sda came up while its group mate sdb is down: its group came back, followover may fail back
    paths[1].chk_state = "down"
    assert plan.first_up_in_group(paths[0], paths, t)
    # with sdb up, sda's return is not a group coming back
    paths[1].chk_state = "up"
    assert not plan.first_up_in_group(paths[0], paths, t)
    assert plan.first_up_in_group(paths[2], paths, t)  # alone in its group


def test_current_group_prefers_the_switch_target_over_the_active_group():
    from pymultipathd.dm import table as dmt

    two = "2 0 0 0 2 2 A 0 1 2 8:0 A 0 0 1 E 0 1 2 8:16 A 0 0 1"
    st = dmt.parse_multipath_status(two)
    assert st.active_group() == 1 and plan.current_group(st) == 2


@pytest.mark.parametrize(("retain", "attached", "handler"), [
    ("", "alua", "alua"),            # the kernel attached alua: the table names it, as upstream's
    ("", "", None),                  # nothing attached, nothing configured
    ("retain_attached_hw_handler no", "alua", None),  # the configuration's (none) instead
    ('hardware_handler "1 emc"', "", "emc"),
])
def test_a_handler_the_kernel_attached_is_the_tables(retain, attached, handler):
    paths = [P("sdb", 16), P("sdc", 32)]
    paths[1].dh_state = attached
    t = plan.build_table(paths, resolver(f"defaults {{\n {retain}\n}}\n" if retain else ""))
    assert t.hwhandler == handler
