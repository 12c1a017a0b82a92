"""The host side of the root-on-multipath boot (tests/vm/rootboot.py): the QEMU command line gives the guest
two SCSI paths to one disk, and the guest's unplug / replug requests become QMP commands."""

from __future__ import annotations

import json
from pathlib import Path

from tests.vm import rootboot


def test_the_boot_has_two_paths_to_one_block_node(tmp_path):
    argv = rootboot.boot_argv(Path("/img"), tmp_path, tmp_path / "disk.qcow2", tmp_path / "initrd", "1")
    devices = [argv[i + 1] for i, a in enumerate(argv)
               if a == "-device" and argv[i + 1].startswith("scsi-hd")]
    assert len(devices) == 2
    for d in devices:
        assert "drive=rootdisk" in d and "share-rw=on" in d and f"wwn={rootboot.WWN}" in d
    assert {d.split("bus=")[1].split(",")[0] for d in devices} == {"scsi0.0", "scsi1.0"}
    assert argv.count("-blockdev") == 1 and "root=/dev/mapper/mpatha" in argv[argv.index("-append") + 1]
    assert "-qmp" in argv and "rootdelay" not in " ".join(argv)  # initramfs-tools sleeps that long first


class FakeQmp:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict | None]] = []

    def run(self, command: str, arguments: dict | None = None, timeout: float = 30) -> dict:
        self.sent.append((command, arguments))
        return {"return": {}}


def test_the_guests_requests_become_qmp_commands(tmp_path):
    qmp = FakeQmp()
    (tmp_path / "qmp-request.json").write_text(json.dumps({"do": "unplug", "id": "p1", "seq": 1}))
    rootboot._serve_requests(tmp_path, qmp)  # type: ignore[arg-type]
    assert qmp.sent == [("device_del", {"id": "p1"})]
    assert json.loads((tmp_path / "qmp-reply.json").read_text()) == {"seq": 1, "reply": {"return": {}}}
    (tmp_path / "qmp-request.json").write_text(json.dumps({"do": "replug", "id": "p1", "seq": 2}))
    rootboot._serve_requests(tmp_path, qmp)  # type: ignore[arg-type]
    command, args = qmp.sent[1]
    assert command == "device_add" and args is not None
    assert (args["id"], args["bus"], args["drive"], args["share-rw"]) == ("p1", "scsi1.0", "rootdisk", True)
    assert not (tmp_path / "qmp-request.json").exists()
    rootboot._serve_requests(tmp_path, qmp)  # type: ignore[arg-type]  # nothing asked: nothing sent
    assert len(qmp.sent) == 2
