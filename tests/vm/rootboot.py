"""Root on multipath, booted for real (issue 20): the host side (stdlib only).

    python -m tests.vm.harness rootboot

Three boots of the test image's kernel, each running a stage of tests/vm/rootboot_guest.py:

  build   the usual guest (its root on virtio, a throw-away snapshot) with the target disk attached: a qcow2
          overlay of the image's root file system, as one scsi-hd with the WWN the test uses. The guest
          installs pymultipathd there as `make install` does (hook and scripts included), enables its unit,
          records the disk's WWID in the wwids and bindings files, and builds the initramfs with
          update-initramfs in a chroot. The image lands in the output share.
  boot    the target disk as two scsi-hd devices on two virtio-scsi controllers, both over one block node
          (share-rw): two SCSI paths to one LUN. Kernel from the image, our initramfs,
          root=/dev/mapper/mpatha. The guest checks that / is on the map with both paths active and
          `pymultipath verify` agrees, writes and reads while the host unplugs one path (QMP device_del)
          and after it plugs it back, then records another WWID in the root's wwids file without
          rebuilding: verify must report it.
  again   the same disk booted again: the root's daemon says the initramfs classified with other inputs
          (its journal, `show status`).
  debian  the same disk booted with the initramfs Debian's multipath-tools-boot builds for it (the build stage
          makes both), for the comparison of image size and boot time (summary.json, docs/benchmarks.md).

The guest asks for the unplug and replug by writing qmp-request.json to the output share; the host runs the
command on QEMU's QMP socket and answers in qmp-reply.json.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

from tests.vm import harness, image

WWN = 0x5000C5005EA71AC0      # the target disk's NAA WWN: its WWID is "3" and these hex digits
SERIAL = "PYMPROOT"
LIMITS = {"build": 1800, "boot": 1200, "again": 900, "debian": 900}


def _blockdev(disk: Path) -> list[str]:
    return ["-blockdev", f"driver=qcow2,node-name=rootdisk,file.driver=file,file.filename={disk}"]


def _path_device(n: int) -> dict[str, object]:
    return {"driver": "scsi-hd", "bus": f"scsi{n}.0", "drive": "rootdisk", "share-rw": True,
            "serial": SERIAL, "wwn": WWN, "id": f"p{n}"}


def _device_arg(d: dict[str, object]) -> str:
    return ",".join([str(d["driver"])] + [f"{k}={'on' if v is True else v}" for k, v in d.items()
                                         if k != "driver" and v is not False])


def build_argv(img: Path, out: Path, disk: Path, smp: str) -> list[str]:
    """The usual guest, with the target disk as one more SCSI disk (one path)."""
    return [*harness.qemu_argv(img, out, interactive=False, smp=smp), *_blockdev(disk),
            "-device", "virtio-scsi-pci,id=scsi0",
            "-device", _device_arg({**_path_device(0), "share-rw": False})]


def boot_argv(img: Path, out: Path, disk: Path, initrd: Path, smp: str) -> list[str]:
    """The target disk as the root, over two paths, with our initramfs."""
    append = ["root=/dev/mapper/mpatha", "rw", "console=ttyS0,115200", "fsck.mode=skip", "panic=-1",
              "net.ifnames=0", "systemd.wants=pymp-run.service", "systemd.mask=getty.target",
              "modprobe.blacklist=kvm,kvm_amd,kvm_intel,pcspkr,floppy",
              "rd.pymultipath.wait=300",  # a TCG guest starts Python slowly
              *os.environ.get("PYMP_ROOTBOOT_APPEND", "").split()]  # e.g. debug=vc: the initramfs traced
    argv = [harness.QEMU, "-accel", "tcg,thread=multi", "-cpu", "max",
            "-smp", smp, "-m", os.environ.get("PYMP_VM_MEM", "2048"),
            "-nodefaults", "-no-user-config", "-no-reboot", "-display", "none", "-nic", "none",
            "-kernel", str(img / "vmlinuz"), "-initrd", str(initrd), "-append", " ".join(append),
            *_blockdev(disk),
            "-device", "virtio-scsi-pci,id=scsi0", "-device", "virtio-scsi-pci,id=scsi1",
            "-device", _device_arg(_path_device(0)), "-device", _device_arg(_path_device(1)),
            "-device", "virtio-rng-pci",
            "-virtfs", f"local,path={harness.REPO},mount_tag={image.REPO_TAG},security_model=none,"
                       "readonly=on,id=repo",
            "-virtfs", f"local,path={out},mount_tag={image.OUT_TAG},security_model=none,id=out",
            "-serial", f"file:{out / 'console.log'}", "-qmp", f"unix:{out / 'qmp.sock'},server=on,wait=off"]
    return argv


class Qmp:
    """One command on QEMU's QMP socket (the greeting and capabilities negotiation first)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def run(self, command: str, arguments: dict[str, object] | None = None, timeout: float = 30) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.path))
            f = s.makefile("rwb")
            json.loads(f.readline())  # greeting
            for msg in ({"execute": "qmp_capabilities"}, {"execute": command, "arguments": arguments or {}}):
                f.write(json.dumps(msg).encode() + b"\n")
                f.flush()
                while True:
                    reply = json.loads(f.readline())
                    if "return" in reply or "error" in reply:
                        break  # events in between are skipped
            return reply


def _serve_requests(out: Path, qmp: Qmp) -> None:
    """The guest's unplug / replug requests (see the module docstring)."""
    req = out / "qmp-request.json"
    if not req.exists():
        return
    try:
        ask = json.loads(req.read_text())
    except ValueError:
        return  # still being written (the guest renames it into place, so this is rare)
    req.unlink()
    what = ask.get("do")
    if what == "unplug":
        reply = qmp.run("device_del", {"id": str(ask["id"])})
    elif what == "replug":
        reply = qmp.run("device_add", _path_device(int(str(ask["id"]).lstrip("p"))))
    else:
        reply = {"error": {"desc": f"unknown request {what!r}"}}
    harness._say(f"rootboot: guest asked {what} {ask.get('id')}: {reply}")
    tmp = out / "qmp-reply.json.tmp"
    tmp.write_text(json.dumps({"seq": ask.get("seq"), "reply": reply}))
    tmp.rename(out / "qmp-reply.json")


class Stage(harness.Job):
    """A boot of one stage: its own QEMU command line, and the QMP requests served while it runs."""

    def __init__(self, stage: str, out: Path, argv: list[str], compare: bool = False) -> None:
        super().__init__("script", ["tests/vm/rootboot_guest.py", stage, *(["--compare"] if compare else [])],
                         out, LIMITS[stage], label=f"[{stage}] ")
        self.argv, self.qmp = argv, Qmp(out / "qmp.sock")

    def start(self, img: Path, smp: str) -> None:
        harness._say(f"{self.label}booting for the root-on-multipath stage (limit {self.limit:.0f} s)")
        self.boots, self.img, self.smp = self.boots + 1, img, smp
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=open(self.out / "qemu.log", "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def running(self) -> bool:
        alive = super().running()
        if alive and (self.out / "qmp.sock").exists():
            try:
                _serve_requests(self.out, self.qmp)
            except (OSError, ValueError) as e:
                harness._say(f"{self.label}QMP: {e}")
        return alive


def _unpacked(image_file: Path) -> int | None:
    """Bytes of an image's files unpacked (what the kernel puts in its RAM file system), with
    initramfs-tools' unmkinitramfs on the host (native speed, not the guest's emulated one)."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="pymp-unpacked-"))
    try:
        subprocess.run(["unmkinitramfs", str(image_file), str(tmp)], check=True, capture_output=True,
                       timeout=600)
        return sum(os.lstat(os.path.join(d, f)).st_size for d, _, fs in os.walk(tmp) for f in fs)
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def summarize(base: Path) -> None:
    """Ours against Debian's multipath-tools-boot on the same root: image size and boot time."""
    try:
        facts = json.loads((base / "rootboot.json").read_text())
    except (OSError, ValueError):
        return
    for key, name in (("ours", "rootboot-initrd.img"), ("debian", "debian-initrd.img")):
        if (base / name).exists():
            facts.setdefault(key, {})["unpacked_bytes"] = _unpacked(base / name)
    for name in ("boot", "again", "debian"):
        try:
            facts.setdefault("debian" if name == "debian" else "ours", {})[f"systemd_analyze_{name}"] = \
                (base / name / "boot-time.txt").read_text().strip()
        except OSError:
            pass
    (base / "summary.json").write_text(json.dumps(facts, indent=1))
    harness._say(f"rootboot: {json.dumps(facts)}")


def _run(stage: Stage, img: Path) -> int:
    try:
        stage.start(img, "")
        while stage.running():
            time.sleep(0.5)
    finally:
        stage.kill()
    return stage.finish()


def run(smp: str | None = None, *, compare: bool = False, base: Path | None = None) -> int:
    """The boots; `compare`: also build Debian's image and boot it (docs/benchmarks.md's figures; minutes
    more of guest time, so not in `make check`). `smp`: CPUs per guest (PYMP_VM_SMP, else 2); `base`: the
    output directory (default out/vm/rootboot), where summary.json ends up."""
    smp = smp or os.environ.get("PYMP_VM_SMP", "2")
    img = image.build()
    base = base or harness.out_dir("rootboot")
    base.mkdir(parents=True, exist_ok=True)
    disk, kept, theirs = base / "rootdisk.qcow2", base / "rootboot-initrd.img", base / "debian-initrd.img"
    # a developer's shortcut: PYMP_ROOTBOOT_REUSE=1 boots the disk and images of the last build again
    reuse = os.environ.get("PYMP_ROOTBOOT_REUSE") == "1" and all(
        p.exists() for p in (disk, kept, *([theirs] if compare else [])))
    if not reuse:
        disk.unlink(missing_ok=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                        str(img / "rootfs.img"), str(disk)], check=True)
    try:
        build = base / "build"
        if not reuse:
            code = _run(Stage("build", build, build_argv(img, build, disk, smp), compare), img)
            initrd = build / "rootboot-initrd.img"
            if code != 0 or not initrd.exists():
                harness._say("rootboot: the build stage failed; no boot from the multipath root")
                return code or 3
            os.replace(initrd, kept)  # the stages' directories are emptied when they start
            if compare:
                os.replace(build / "debian-initrd.img", theirs)
            os.replace(build / "rootboot.json", base / "rootboot.json")
        boot = base / "boot"
        code = _run(Stage("boot", boot, boot_argv(img, boot, disk, kept, smp)), img)
        if code != 0:
            return code
        again = base / "again"
        code = _run(Stage("again", again, boot_argv(img, again, disk, kept, smp)), img)
        if code != 0 or not compare:
            summarize(base)
            return code
        debian = base / "debian"
        code = _run(Stage("debian", debian, boot_argv(img, debian, disk, theirs, smp)), img)
        summarize(base)
        return code
    finally:
        if os.environ.get("PYMP_ROOTBOOT_REUSE") != "1":
            disk.unlink(missing_ok=True)  # a 2 GB overlay grows with every write: not kept between runs
