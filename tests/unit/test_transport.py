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
    (Transport(eh_deadline=10, max_sectors_kb=128), Kind.OTHER, FAIL, [(Attr.QUEUE_MAX_SECTORS_KB, "128")]),
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
