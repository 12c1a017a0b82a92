"""Root on multipath, the guest's stages (tests/vm/rootboot.py says what each boot is). Stdlib only.

    rootboot_guest.py build [--compare] | boot | again | debian

Each prints what it checks and exits non-zero on the first thing that is not as it must be.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

OUT = "/mnt/out"
REPO = "/mnt/repo"
TARGET = "/mnt/target"
SITE = "/opt/pymp/lib/python3.11/site-packages"
PYTHON = "/opt/pymp/bin/python"
BINDIR, LIBEXECDIR = "/usr/local/bin", "/usr/local/libexec"
ALIAS = "mpatha"
OTHER_WWID = "36001405feedfacefeedfacefeedface"  # recorded in the root's wwids after the image was built
CONF = """\
defaults {
	user_friendly_names yes
	find_multipaths strict
	polling_interval 2
}
blacklist {
	devnode "^vd[a-z]"
}
"""


class Failed(Exception):
    pass


def run(*argv: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise Failed(f"{' '.join(argv)} exited {p.returncode}:\n{p.stdout}{p.stderr}")
    return p


def say(msg: str) -> None:
    print(f"[rootboot] {msg}", flush=True)


def wait_for(pred, timeout: float, what: str, interval: float = 1.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(interval)
    raise Failed(f"timed out after {timeout:.0f} s waiting for {what}")


def udev_property(dev: str, name: str) -> str | None:
    out = run("udevadm", "info", "--query=property", f"--name={dev}", check=False).stdout
    return next((ln.split("=", 1)[1] for ln in out.splitlines() if ln.startswith(f"{name}=")), None)


# --- build: install into the target disk and make its initramfs ------------------------------------------

def _copy(src: str, dst_root: str = TARGET) -> None:
    dst = dst_root + src
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.isdir(src):
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst, symlinks=True)
    else:
        shutil.copy2(src, dst)


def _write(path: str, text: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def _install_initramfs_files() -> None:
    """What `make install` puts under /usr/share/initramfs-tools, with this system's paths."""
    subst = {"@BINDIR@": BINDIR, "@LIBEXECDIR@": LIBEXECDIR, "@PYTHON@": PYTHON, "@SITE@": SITE}
    base = f"{TARGET}/usr/share/initramfs-tools"
    for src, dst in (("initramfs-tools/hooks/pymultipathd", "hooks/pymultipathd"),
                     ("initramfs-tools/scripts/local-top/pymultipathd", "scripts/local-top/pymultipathd"),
                     ("initramfs-tools/scripts/init-bottom/pymultipathd", "scripts/init-bottom/pymultipathd"),
                     ("pymultipathd-boot", "scripts/pymultipathd-boot")):
        with open(f"{REPO}/initramfs/{src}") as f:
            text = f.read()
        for k, v in subst.items():
            text = text.replace(k, v)
        _write(f"{base}/{dst}", text, 0o755)


def build() -> int:
    disks = [os.path.basename(d) for d in glob.glob("/sys/block/sd*")]
    if len(disks) != 1:
        raise Failed(f"expected the target disk alone on SCSI, found {disks}")
    dev = f"/dev/{disks[0]}"
    wwid = udev_property(dev, "ID_SERIAL")
    if not wwid or not wwid.startswith("35000c500"):
        raise Failed(f"{dev}: unexpected WWID {wwid!r} (the host gives it WWN 0x5000c5005ea71ac0)")
    say(f"target disk {dev}, WWID {wwid}")
    os.makedirs(TARGET, exist_ok=True)
    run("mount", dev, TARGET)
    binds = []
    try:
        # pymultipathd as this boot's pymp-setup installed it, and as `make install` lays it out
        for path in (f"{SITE}/pymultipathd", f"{BINDIR}/pymultipath", f"{BINDIR}/pymultipathd",
                     f"{BINDIR}/pympathpersist", f"{LIBEXECDIR}/pymultipath-udev",
                     "/etc/udev/rules.d/62-pymultipath.rules", "/etc/systemd/system/pymultipathd.service",
                     "/etc/systemd/system/pymultipathd.socket"):
            _copy(path)
        wants = f"{TARGET}/etc/systemd/system/sysinit.target.wants"
        os.makedirs(wants, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{wants}/pymultipathd.service")
        os.symlink("/etc/systemd/system/pymultipathd.service", f"{wants}/pymultipathd.service")
        _write(f"{TARGET}/etc/multipath.conf", CONF)
        _write(f"{TARGET}/etc/multipath/wwids", f"# Multipath wwids, Version : 1.0\n/{wwid}/\n")
        _write(f"{TARGET}/etc/multipath/bindings", f"# Multipath bindings, Version : 1.0\n{ALIAS} {wwid}\n")
        _install_initramfs_files()
        # a root on SCSI: the controller's and disk's drivers in the image, as an administrator lists them
        with open(f"{TARGET}/etc/initramfs-tools/modules", "a") as f:
            f.write("virtio_scsi\nsd_mod\ndm_multipath\n")
        for fs in ("/proc", "/sys", "/dev", "/run"):
            run("mount", "--rbind", fs, TARGET + fs)
            binds.append(TARGET + fs)
        kver = os.uname().release
        t0 = time.monotonic()
        p = run("chroot", TARGET, "update-initramfs", "-u", "-k", kver, check=False, timeout=1200)
        print(p.stdout + p.stderr, flush=True)
        if p.returncode != 0:
            raise Failed(f"update-initramfs exited {p.returncode}")
        built = time.monotonic() - t0
        initrd = f"{TARGET}/boot/initrd.img-{kver}"
        shutil.copyfile(initrd, f"{OUT}/rootboot-initrd.img")
        listing = run("lsinitramfs", initrd).stdout.splitlines()
        ours = [x for x in listing if "pymultipathd" in x]
        say(f"initramfs built in {built:.0f} s: {os.path.getsize(initrd)} bytes, {len(listing)} entries, "
            f"{len(ours)} of pymultipathd")
        if not any(x.endswith("pymultipathd/classify.py") or x.endswith("pymultipathd/classify.pyc")
                   for x in listing):
            raise Failed("the initramfs has no pymultipathd package")
        debian = _debian_image(kver, initrd) if "--compare" in sys.argv else None
        with open(f"{OUT}/rootboot.json", "w") as f:
            json.dump({"wwid": wwid, "kver": kver, "ours": {"initrd_bytes": os.path.getsize(initrd),
                       "build_s": round(built, 1), "entries": len(listing)}, "debian": debian}, f)
    finally:
        for b in reversed(binds):
            run("umount", "-R", b, check=False)
        run("umount", TARGET, check=False)
    return 0


def _debian_image(kver: str, ours: str) -> dict:
    """The same root's initramfs built with Debian's multipath-tools-boot instead of our hook, for the
    comparison of size and boot time (docs/benchmarks.md); ours is put back in /boot afterwards."""
    debs = glob.glob(f"{TARGET}/var/cache/pymp-debs/multipath-tools-boot_*.deb")
    if len(debs) != 1:
        raise Failed(f"multipath-tools-boot's package not in the image: {debs}")
    saved = "/tmp/pymp-ours"
    shutil.rmtree(saved, ignore_errors=True)
    os.makedirs(saved)
    shutil.copyfile(ours, f"{saved}/initrd.img")
    base = f"{TARGET}/usr/share/initramfs-tools"
    mine = ("hooks/pymultipathd", "scripts/local-top/pymultipathd", "scripts/init-bottom/pymultipathd")
    for rel in mine:
        os.makedirs(os.path.dirname(f"{saved}/{rel}"), exist_ok=True)
        shutil.move(f"{base}/{rel}", f"{saved}/{rel}")
    try:
        env = ["env", "DEBIAN_FRONTEND=noninteractive"]
        t0 = time.monotonic()  # the package's trigger builds the image (update-initramfs -u), once
        run("chroot", TARGET, *env, "dpkg", "-i", debs[0][len(TARGET):], timeout=1200)
        built = time.monotonic() - t0
        theirs = f"{TARGET}/boot/initrd.img-{kver}"
        shutil.copyfile(theirs, f"{OUT}/debian-initrd.img")
        listing = run("lsinitramfs", theirs).stdout.splitlines()
        if not any(x.endswith("sbin/multipath") or x.endswith("sbin/multipathd") for x in listing):
            raise Failed("the image multipath-tools-boot built has no multipath in it")
        facts = {"initrd_bytes": os.path.getsize(theirs), "build_s": round(built, 1), "entries": len(listing)}
        say(f"Debian's multipath-tools-boot image: {facts}")
        # gone again without the rebuild its trigger would start (minutes here): ours goes back in place
        run("chroot", TARGET, *env, "dpkg", "--purge", "--no-triggers", "multipath-tools-boot", timeout=600)
    finally:
        for rel in mine:
            shutil.move(f"{saved}/{rel}", f"{base}/{rel}")
        shutil.copyfile(f"{saved}/initrd.img", ours)  # the root's own image is ours again
    return facts


# --- boot: the root on the map, both paths, a path unplugged and back -------------------------------------

SEQ = [0]


def host(do: str, dev_id: str) -> dict:
    """Ask the host to unplug or replug a path (tests/vm/rootboot.py serves it over QMP)."""
    SEQ[0] += 1
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{OUT}/qmp-reply.json")
    tmp = f"{OUT}/qmp-request.json.tmp"
    with open(tmp, "w") as f:
        json.dump({"do": do, "id": dev_id, "seq": SEQ[0]}, f)
    os.rename(tmp, f"{OUT}/qmp-request.json")

    def answered() -> dict | None:
        try:
            with open(f"{OUT}/qmp-reply.json") as f:
                got = json.load(f)
        except (OSError, ValueError):
            return None
        return got if got.get("seq") == SEQ[0] else None
    got = wait_for(answered, 60, f"the host to {do} {dev_id}", 0.5)
    if "error" in got["reply"]:
        raise Failed(f"the host could not {do} {dev_id}: {got['reply']}")
    return got


def map_paths() -> list[tuple[str, str]]:
    """(major:minor, A/F) of the root map's paths, from the kernel's status."""
    words = run("dmsetup", "status", ALIAS).stdout.split()
    return [(words[i], words[i + 1]) for i, w in enumerate(words) if ":" in w and i + 1 < len(words)
            and words[i + 1] in ("A", "F")]


def io_works(tag: str) -> None:
    data = os.urandom(4 << 20)
    path = f"/var/tmp/rootboot-{tag}"
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    run("sh", "-c", "echo 3 > /proc/sys/vm/drop_caches")
    with open(path, "rb") as f:
        back = f.read()
    if hashlib.sha256(back).digest() != hashlib.sha256(data).digest():
        raise Failed(f"{path}: read back other data than written")
    os.unlink(path)
    say(f"I/O on the root: 4 MiB written, synced, read back ({tag})")


def boot() -> int:
    source = run("findmnt", "-n", "-o", "SOURCE", "/").stdout.strip()
    say(f"/ is on {source}")
    if source not in (f"/dev/mapper/{ALIAS}", "/dev/dm-0"):
        raise Failed(f"/ is on {source}, not on /dev/mapper/{ALIAS}")
    real = os.path.realpath(source)
    if os.path.realpath(f"/dev/mapper/{ALIAS}") != real:
        raise Failed(f"{source} is not the map {ALIAS}")
    log = "/run/initramfs/pymultipathd/log"
    if os.path.exists(log):
        with open(log, errors="replace") as f:
            say("the initramfs daemon's log ends:\n" + "".join(f.readlines()[-15:]))
    paths = wait_for(lambda: (p := map_paths()) and len(p) == 2 and all(s == "A" for _, s in p) and p,
                     120, "both paths of the root map active")
    say(f"root map {ALIAS}: paths {paths}")
    wait_for(daemon_active, 120, "the root's pymultipathd.service")
    print(run(f"{BINDIR}/pymultipathd", "show", "topology").stdout, flush=True)
    status = run(f"{BINDIR}/pymultipathd", "show", "status").stdout
    if "initramfs" in status:
        raise Failed(f"show status reports an initramfs difference on a clean boot:\n{status}")
    v = run(f"{BINDIR}/pymultipath", "verify", check=False, timeout=900)
    print(v.stdout + v.stderr, flush=True)
    if v.returncode != 0:
        raise Failed(f"pymultipath verify exited {v.returncode} on the system it was built for")
    io_works("two paths")
    host("unplug", "p1")
    wait_for(lambda: len(map_paths()) == 1, 120, "the unplugged path to leave the root map")
    say(f"one path unplugged: {map_paths()}")
    io_works("one path")
    host("replug", "p1")
    wait_for(lambda: (p := map_paths()) and len(p) == 2 and all(s == "A" for _, s in p), 180,
             "the replugged path back in the root map")
    say(f"path back: {map_paths()}")
    io_works("two paths again")
    # the root's classification changes, the image stays as it was
    run(f"{BINDIR}/pymultipath", "-a", OTHER_WWID)
    v = run(f"{BINDIR}/pymultipath", "verify", check=False, timeout=900)
    print(v.stdout + v.stderr, flush=True)
    if v.returncode != 1 or OTHER_WWID not in v.stdout:
        raise Failed(f"verify after a wwids change without a rebuild: exit {v.returncode}, the WWID "
                     f"{'named' if OTHER_WWID in v.stdout else 'not named'}")
    run("sync")
    return 0


def daemon_active() -> bool:
    return run("systemctl", "is-active", "pymultipathd.service", check=False).stdout.strip() == "active"


# --- again: the fingerprint warning after the reboot -------------------------------------------------------

def again() -> int:
    source = run("findmnt", "-n", "-o", "SOURCE", "/").stdout.strip()
    say(f"/ is on {source}")
    wait_for(daemon_active, 120, "the root's pymultipathd.service")
    journal = wait_for(lambda: (j := run("journalctl", "-b", "-u", "pymultipathd.service", "-o", "cat",
                                         "--no-pager").stdout) and "initramfs fingerprint" in j and j,
                       120, "the fingerprint warning in the daemon's journal")
    said = [ln for ln in journal.splitlines()
            if "initramfs fingerprint" in ln or "the initramfs of this boot" in ln]
    print("\n".join(said), flush=True)
    if not any(OTHER_WWID in ln for ln in said) or not any("pymultipath verify --fix" in ln for ln in said):
        raise Failed("the warning names neither the wwids difference nor the fix")
    status = run(f"{BINDIR}/pymultipathd", "show", "status").stdout
    if OTHER_WWID not in status:
        raise Failed(f"show status does not repeat the difference:\n{status}")
    say("the root's daemon warned about the initramfs's other inputs, in its journal and show status")
    return 0


# --- debian: the same root booted with Debian's multipath-tools-boot initramfs (the comparison) ------------

def debian() -> int:
    source = run("findmnt", "-n", "-o", "SOURCE", "/").stdout.strip()
    say(f"/ is on {source} (Debian's initramfs)")
    if os.path.realpath(source) != os.path.realpath(f"/dev/mapper/{ALIAS}"):
        raise Failed(f"/ is on {source}, not on the map {ALIAS}")
    return 0


def timing() -> None:
    """How long the boot took, as systemd measured it (kernel + initramfs, then the root's userspace)."""
    out = run("systemd-analyze", "time", check=False).stdout.strip()
    say(f"systemd-analyze: {out}")
    with open(f"{OUT}/boot-time.txt", "w") as f:
        f.write(out + "\n")


def main() -> int:
    stage = sys.argv[1]
    try:
        if stage != "build":
            wait_for(lambda: run("systemctl", "is-system-running", check=False).stdout.strip()
                     not in ("initializing", "starting"), 300, "the boot to finish")
            timing()
        return {"build": build, "boot": boot, "again": again, "debian": debian}[stage]()
    except Failed as e:
        say(f"FAILED ({stage}): {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
