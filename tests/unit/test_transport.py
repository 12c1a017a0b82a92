"""fast_io_fail_tmo, dev_loss_tmo, eh_deadline and max_sectors_kb: what each kind of path gets (a table of
upstream's rules), and the sysfs writes on a stand-in tree (the VM test proves them on a real iSCSI bed)."""

from __future__ import annotations

import pytest

from pymultipathd import locations
from pymultipathd.config import parse_text
from pymultipathd.paths import transport as adapter
from pymultipathd.policy.settings import NoPathRetry, RetryMode
from pymultipathd.policy.transport import MAX_DEV_LOSS_TMO, OFF, Attr, Kind, Transport, transport, writes
from tests.unit.sysfs_tree import Tree

FAIL, QUEUE = NoPathRetry(RetryMode.FAIL), NoPathRetry(RetryMode.QUEUE)


def _t(text: str) -> Transport:
    cfg = parse_text("defaults {\n" + text + "\n}\n")
    return transport(lambda kw: cfg.resolve(kw))


def test_the_keywords_as_typed_values():
    assert _t("") == Transport(fast_io_fail=5)  # upstream's default fast_io_fail_tmo
    assert _t("fast_io_fail_tmo off\ndev_loss_tmo infinity\neh_deadline 0\nmax_sectors_kb 256") == \
        Transport(fast_io_fail=OFF, dev_loss=MAX_DEV_LOSS_TMO, eh_deadline=0, max_sectors_kb=256)


@pytest.mark.parametrize(("t", "kind", "npr", "wanted"), [
    # iSCSI: fast_io_fail_tmo is the session's recovery_tmo; off, 0 and dev_loss_tmo do nothing there
    (Transport(fast_io_fail=7, dev_loss=60), Kind.ISCSI, FAIL, [(Attr.SESSION_RECOVERY_TMO, "7")]),
    (Transport(fast_io_fail=OFF), Kind.ISCSI, FAIL, []),
    (Transport(fast_io_fail=0), Kind.ISCSI, FAIL, []),
    # FC: dev_loss_tmo covers no_path_retry's queueing; fast_io_fail off when not below it
    (Transport(fast_io_fail=5, dev_loss=30), Kind.FC, FAIL,
     [(Attr.RPORT_FAST_IO_FAIL_TMO, "5"), (Attr.RPORT_DEV_LOSS_TMO, "30")]),
    (Transport(fast_io_fail=5, dev_loss=30), Kind.FC, NoPathRetry(RetryMode.COUNT, 12),
     [(Attr.RPORT_FAST_IO_FAIL_TMO, "5"), (Attr.RPORT_DEV_LOSS_TMO, "60")]),     # 12 x 5 s
    (Transport(fast_io_fail=5), Kind.FC, QUEUE,
     [(Attr.RPORT_FAST_IO_FAIL_TMO, "5"), (Attr.RPORT_DEV_LOSS_TMO, str(MAX_DEV_LOSS_TMO))]),
    (Transport(fast_io_fail=40, dev_loss=30), Kind.FC, FAIL,
     [(Attr.RPORT_FAST_IO_FAIL_TMO, "off"), (Attr.RPORT_DEV_LOSS_TMO, "30")]),
    (Transport(fast_io_fail=0), Kind.FC, FAIL, [(Attr.RPORT_FAST_IO_FAIL_TMO, "0")]),
    (Transport(dev_loss=45), Kind.SAS, FAIL, [(Attr.SAS_NEXUS_LOSS_TMO, "45")]),
    # any SCSI host: eh_deadline; any path: max_sectors_kb
    (Transport(eh_deadline=OFF, max_sectors_kb=128), Kind.ISCSI, FAIL,
     [(Attr.HOST_EH_DEADLINE, "off"), (Attr.QUEUE_MAX_SECTORS_KB, "128")]),
    (Transport(eh_deadline=10, max_sectors_kb=128), Kind.OTHER, FAIL,   # any SCSI host (SRP, virtio-scsi)
     [(Attr.HOST_EH_DEADLINE, "10"), (Attr.QUEUE_MAX_SECTORS_KB, "128")]),
    (Transport(fast_io_fail=OFF), Kind.FC, QUEUE,                      # 600 s at most without fast_io_fail
     [(Attr.RPORT_FAST_IO_FAIL_TMO, "off"), (Attr.RPORT_DEV_LOSS_TMO, "600")]),
])
def test_what_each_kind_of_path_gets(t, kind, npr, wanted):
    assert writes(t, kind, npr, 5.0) == wanted


def test_the_adapter_writes_only_what_differs_and_reports_what_it_cannot(tmp_path, monkeypatch):
    tree = Tree(tmp_path)
    base = tree.disk("sdb", "8:16", "36001405aa", transport="session1")
    (base / "queue").mkdir()
    (base / "queue" / "max_sectors_kb").write_text("1280\n")
    session = tree.sys / "class" / "iscsi_session" / "session1"
    session.mkdir(parents=True)
    (session / "recovery_tmo").write_text("120\n")
    host = tree.sys / "class" / "scsi_host" / "host3"
    host.mkdir(parents=True)
    (host / "eh_deadline").write_text("off\n")
    for k, v in tree.env().items():
        monkeypatch.setenv(k, v)
    locations.install(locations.Locations.from_env(tree.env()))
    assert adapter.kind("sdb") is Kind.ISCSI
    t = Transport(fast_io_fail=7, eh_deadline=OFF, max_sectors_kb=256)
    assert adapter.apply_all(["sdb"], t, FAIL, 5.0) == []
    assert (session / "recovery_tmo").read_text() == "7"
    assert (base / "queue" / "max_sectors_kb").read_text() == "256"
    assert (host / "eh_deadline").read_text() == "off\n"  # already so: not written
    (session / "recovery_tmo").chmod(0o444)
    (session / "recovery_tmo").unlink()
    (session / "recovery_tmo").mkdir()  # a write that fails
    problems = adapter.apply_all(["sdb"], Transport(fast_io_fail=9), FAIL, 5.0)
    assert len(problems) == 1 and "cannot set" in problems[0] and "recovery_tmo to 9" in problems[0]


def _fc_tree(tmp_path, *, npiv: bool = False) -> Tree:
    """A disk behind an FC remote port (under NPIV: a virtual port's host below the physical HBA's)."""
    tree = Tree(tmp_path)
    chain = "host5/vport-5:0-0/host6/rport-6:0-0/target6:0:0" if npiv else "host6/rport-6:0-0/target6:0:0"
    real = tree.sys / "devices" / "pci0000:00" / chain / "6:0:0:1"
    real.mkdir(parents=True)
    base = tree.sys / "block" / "sdc"
    (base / "queue").mkdir(parents=True)
    (base / "queue" / "max_sectors_kb").write_text("512\n")
    (base / "device").symlink_to(real)
    for host in ("host5", "host6"):
        (tree.sys / "class" / "scsi_host" / host).mkdir(parents=True)
        (tree.sys / "class" / "scsi_host" / host / "eh_deadline").write_text("off\n")
    rport = tree.sys / "class" / "fc_remote_ports" / "rport-6:0-0"
    rport.mkdir(parents=True)
    (rport / "dev_loss_tmo").write_text("30\n")
    (rport / "fast_io_fail_tmo").write_text("5\n")
    locations.install(locations.Locations.from_env(tree.env()))
    return tree


def test_eh_deadline_goes_to_the_paths_own_host_under_npiv(tmp_path):
    tree = _fc_tree(tmp_path, npiv=True)
    assert adapter.kind("sdc") is Kind.FC
    assert adapter.apply_all(["sdc"], Transport(eh_deadline=10), FAIL, 5.0) == []
    hosts = {h: (tree.sys / "class" / "scsi_host" / h / "eh_deadline").read_text().strip()
             for h in ("host5", "host6")}
    assert hosts == {"host5": "off", "host6": "10"}


def test_a_fast_io_fail_tmo_above_the_ports_dev_loss_raises_it_first(tmp_path):
    tree = _fc_tree(tmp_path)
    rport = tree.sys / "class" / "fc_remote_ports" / "rport-6:0-0"
    assert adapter.apply_all(["sdc"], Transport(fast_io_fail=40, dev_loss=60), FAIL, 5.0) == []
    assert ((rport / "fast_io_fail_tmo").read_text(), (rport / "dev_loss_tmo").read_text()) == ("40", "60")


def test_a_path_joining_a_live_map_gets_the_maps_limit(tmp_path):
    tree = _fc_tree(tmp_path)
    (tree.sys / "block" / "dm-2" / "queue").mkdir(parents=True)
    (tree.sys / "block" / "dm-2" / "queue" / "max_sectors_kb").write_text("256\n")
    assert adapter.match_map(["sdc"], "dm-2") == []
    assert (tree.sys / "block" / "sdc" / "queue" / "max_sectors_kb").read_text() == "256"


def test_a_device_without_a_scsi_host_skips_eh_deadline_quietly(tmp_path):
    tree = Tree(tmp_path)
    real = tree.sys / "devices" / "pci0000:00" / "virtio3"
    real.mkdir(parents=True)
    (tree.sys / "block" / "vdb").mkdir(parents=True)
    (tree.sys / "block" / "vdb" / "device").symlink_to(real)
    locations.install(locations.Locations.from_env(tree.env()))
    assert adapter.apply_all(["vdb"], Transport(eh_deadline=10), FAIL, 5.0) == []


PROTOCOLS = """\
defaults {
	fast_io_fail_tmo 5
	eh_deadline 20
}
overrides {
	dev_loss_tmo 60
	protocol {
		type "scsi:iscsi"
		fast_io_fail_tmo 9
		dev_loss_tmo 30
	}
	protocol {
		type "scsi:fcp"
		eh_deadline off
		no_path_retry queue
	}
}
"""


def test_overrides_protocol_subsections_set_the_timeouts_of_their_transport_only():
    cfg = parse_text(PROTOCOLS, "multipath.conf")
    said = [str(w) for w in cfg.warnings]
    assert any("multipath.conf:15" in w and "no_path_retry" in w and "not allowed in overrides protocol" in w
               for w in said), said

    def of(protocol: str | None) -> Transport:
        return transport(lambda kw: cfg.resolve(kw, wwid="w", vendor="V", product="P", protocol=protocol))
    assert of("scsi:iscsi") == Transport(fast_io_fail=9, dev_loss=30, eh_deadline=20)
    assert of("scsi:fcp") == Transport(fast_io_fail=5, dev_loss=60, eh_deadline=OFF)
    assert of("scsi:sas") == of(None) == Transport(fast_io_fail=5, dev_loss=60, eh_deadline=20)
    assert cfg.resolve("no_path_retry", protocol="scsi:fcp") != "queue"


def test_a_protocol_subsection_reads_back_from_pymultipath_t():
    from pymultipathd.config.render import render

    cfg = parse_text(PROTOCOLS, "multipath.conf")
    again = parse_text(render(cfg), "-t")
    assert again.protocols == cfg.protocols
    assert parse_text('overrides {\n protocol {\n fast_io_fail_tmo 3\n }\n}\n', "x").protocols == []


def test_a_maps_paths_of_two_transports_get_each_their_own_values():
    from pymultipathd import mapmaker
    from pymultipathd.classify import PathFacts
    from pymultipathd.policy.state import DaemonState, PathState

    cfg = parse_text(PROTOCOLS)
    state = DaemonState()
    for dev, proto in (("sdb", "scsi:iscsi"), ("sdc", "scsi:fcp"), ("sdd", "scsi:iscsi")):
        state.paths[dev] = PathState(dev=dev, dev_t="8:0", facts=PathFacts(dev=dev, dev_t="8:0", wwid="w",
                                                                        protocol=proto))
    work = mapmaker.transport_work(state, "w", ("sdb", "sdc", "sdd"),
                                   lambda proto: lambda kw: cfg.resolve(kw, wwid="w", protocol=proto))
    assert work is not None
    assert {devs: t.fast_io_fail for devs, t in work.groups} == {("sdb", "sdd"): 9, ("sdc",): 5}


def test_a_protocol_subsection_of_an_unknown_type_is_refused_out_loud():
    cfg = parse_text('overrides {\n protocol {\n type iscsi\n fast_io_fail_tmo 3\n }\n}\n', "multipath.conf")
    assert cfg.protocols == []
    assert any("multipath.conf:2" in str(w) and "invalid type 'iscsi'" in str(w) for w in cfg.warnings)
