"""The test VM image: its recipe and how it is built (host side, stdlib only).

The image is cached under a directory named by a hash of this file's content, so editing anything here (a
package, a unit, a build step) gives a new image on the next run and nothing else does. Guest-side logic that
changes often lives in the repository (tests/vm/guest.py), which the guest reads from the 9p share at boot.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = "bookworm"

DEBS = [
    "linux-image-amd64", "systemd", "systemd-sysv", "udev", "kmod", "iproute2", "dmsetup", "lvm2",
    "xfsprogs", "e2fsprogs", "sg3-utils", "open-iscsi", "multipath-tools", "kpartx", "python3",
    "python3-venv", "python3-systemd", "python3-pip", "util-linux", "psmisc", "procps", "less", "fdisk",
    # kernel holders of a map that the flush report must name (tests/vm/test_holders_vm.py)
    "mdadm", "cryptsetup-bin", "btrfs-progs",
    # initramfs-tools' default compressor (it falls back to gzip, several times slower to build under TCG):
    # the root-on-multipath boot builds two images (tests/vm/rootboot.py)
    "zstd",
]

# Python packages of the guest venv (/opt/pymp, sees python3-systemd through --system-site-packages).
PY_PACKAGES = ["pydantic>=2", "pyudev", "pyroute2", "pytest", "pytest-timeout", "hypothesis",
               "py-spy"]  # py-spy: `make bench`'s profiles of the running daemon
GUEST_PY = "3.11"  # bookworm's python3: the wheels are fetched for this version
VENV = "/opt/pymp"
INITRD_MODULES = ["virtio_pci", "virtio_blk", "ext4"]  # the root disk (9p comes later, modules-load.d)
# The checkout is read-only in the guest, so the venv's python keeps all bytecode under this prefix (set by
# a .pth, _customize). The prefix hides every __pycache__ next to the sources, so the image ships it filled
# for the standard library and the venv: else each boot compiled pytest, hypothesis, pyroute2 and the
# stdlib afresh (seconds of a one-CPU TCG guest each).
PYCACHE = "/var/cache/pymp-pycache"

REPO_MOUNT = "/mnt/repo"  # the checkout, read-only
OUT_MOUNT = "/mnt/out"  # results, read-write
DEBIAN_BOOT_DEBS = "/var/cache/pymp-debs"  # multipath-tools-boot's package, downloaded, not installed
REPO_TAG = "pymp_repo"
OUT_TAG = "pymp_out"
MARKER = "/etc/pymp-vm"  # exists only inside the test VM: conftest refuses to run elsewhere
INITIATOR = "iqn.2024-01.org.pymultipathd:vm-initiator"

FSTAB = f"""\
{REPO_TAG} {REPO_MOUNT} 9p trans=virtio,version=9p2000.L,ro,msize=262144,nofail 0 0
{OUT_TAG} {OUT_MOUNT} 9p trans=virtio,version=9p2000.L,msize=262144,nofail 0 0
"""

# Runs on every boot: installs the project from the share (seconds, no image rebuild for a code change).
SETUP_UNIT = f"""\
[Unit]
Description=Install pymultipathd from the shared checkout
RequiresMountsFor={REPO_MOUNT} {OUT_MOUNT}
After=systemd-udevd.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={VENV}/bin/python {REPO_MOUNT}/tests/vm/guest.py setup

[Install]
WantedBy=multi-user.target
"""

# Pulled in by systemd.wants= on the kernel command line for test/demo/bench runs (never for `shell`).
# Type=exec so boot completes while it runs; its end powers the guest off either way.
RUN_UNIT = f"""\
[Unit]
Description=pymultipathd VM job (reads {OUT_MOUNT}/job.json)
Requires=pymp-setup.service
After=pymp-setup.service iscsid.socket
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=exec
ExecStart={VENV}/bin/python {REPO_MOUNT}/tests/vm/guest.py run
StandardOutput=journal+console
StandardError=journal+console
# just above the harness's longest limit (a bench guest's 7200 s): a job the host gave up on never lingers
RuntimeMaxSec=7300
"""

AUTOLOGIN = """\
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %I $TERM
"""

# Nothing should run behind the tests' back; multipathd is the comparison, started on demand only.
MASK = [
    "multipathd.service", "multipathd.socket", "apt-daily.timer", "apt-daily-upgrade.timer",
    "fstrim.timer", "e2scrub_all.timer", "e2scrub_reap.service", "man-db.timer", "dpkg-db-backup.timer",
    "systemd-timesyncd.service", "lvm2-monitor.service", "open-iscsi.service",
    "mdmonitor.service", "mdmonitor-oneshot.timer", "mdcheck_start.timer", "mdcheck_continue.timer",
]

PROFILE = f"""\
export PATH={VENV}/bin:$PATH
# the checkout is read-only: no pytest cache, hypothesis examples in /tmp
export PYTEST_ADDOPTS="-p no:cacheprovider" HYPOTHESIS_STORAGE_DIRECTORY=/tmp/.hypothesis
cd {REPO_MOUNT} 2>/dev/null || true
echo "pymultipathd test VM: repo at {REPO_MOUNT} (read-only), results in {OUT_MOUNT}."
echo "Run a test: pytest tests/vm -k NAME     Leave: poweroff (or Ctrl-A X)"
"""


def recipe_hash() -> str:
    """Hash of this file: the package lists, unit texts and build steps all live here."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("PYMP_VM_CACHE") or "/var/cache/pymultipathd-vm")


def image_dir() -> Path:
    return cache_root() / recipe_hash()


def is_built(d: Path) -> bool:
    return all((d / f).is_file() for f in ("rootfs.img", "vmlinuz", "initrd.img", "recipe.sha"))


def mirrors(sources: str = "/etc/apt/sources.list.d/debian.sources") -> list[str]:
    """One-line apt sources for SUITE built from the host's deb822 file (mirror URIs are never hard-coded)."""
    try:
        text = Path(sources).read_text()
    except OSError as e:
        raise SystemExit(f"image: cannot read the host's apt sources {sources}: {e}") from e
    main_uri = security_uri = None
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or not fields.get("uris"):
            continue
        uri = fields["uris"].split()[0]
        if any(s.endswith("-security") for s in fields.get("suites", "").split()):
            security_uri = security_uri or uri
        else:
            main_uri = main_uri or uri
    if not main_uri:
        raise SystemExit(f"image: no Debian mirror found in {sources}")
    lines = [f"deb {main_uri} {SUITE} main", f"deb {main_uri} {SUITE}-updates main"]
    if security_uri:
        lines.append(f"deb {security_uri} {SUITE}-security main")
    return lines


def _log(msg: str) -> None:
    print(f"[vm-image] {msg}", flush=True)


def _run(argv: list[str], log: Path) -> None:
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(argv)}\n")
        f.flush()
        r = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, check=False)
    if r.returncode:
        tail = log.read_text(errors="replace").splitlines()[-40:]
        raise SystemExit(f"image: {argv[0]} failed with exit code {r.returncode}; end of {log}:\n"
                         + "\n".join(tail))


def _fetch_wheels(dest: Path, log: Path) -> None:
    """Download guest wheels with the host's pip and its configuration (index, find-links, certificates)."""
    plat = ["--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64"]
    abi = "cp" + GUEST_PY.replace(".", "")
    _run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", GUEST_PY,
          "--implementation", "cp", "--abi", abi, *plat, "-d", str(dest), *PY_PACKAGES], log)


def _write(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    p.chmod(mode)


def _symlink(root: Path, rel: str, target: str) -> None:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.is_symlink() or p.exists():
        p.unlink()
    p.symlink_to(target)


def is_debian_multipath_rule(text: str) -> bool:
    """The udev rule file of Debian's multipath-tools that classifies paths (masked in the image)."""
    return "multipath -u" in text


def _customize(root: Path) -> None:
    """Plain file edits on the unpacked tree (no chroot needed)."""
    _write(root, MARKER, "pymultipathd test VM\n")
    _write(root, "/etc/hostname", "pymp-vm\n")
    _write(root, "/etc/fstab", FSTAB)
    (root / REPO_MOUNT.lstrip("/")).mkdir(parents=True, exist_ok=True)
    (root / OUT_MOUNT.lstrip("/")).mkdir(parents=True, exist_ok=True)
    _write(root, "/etc/modules-load.d/pymp.conf", "9p\n9pnet_virtio\n")
    # md arrays are made by tests on maps; udev must never assemble one from the maps' raw paths
    _write(root, "/etc/mdadm/mdadm.conf", "AUTO -all\n")
    # the checkout on the venv's sys.path, for the tests package; the "import" line of a .pth runs at start-up
    _write(root, f"{VENV}/lib/python{GUEST_PY}/site-packages/pymultipathd-checkout.pth",
           f"{REPO_MOUNT}\nimport sys; sys.pycache_prefix = sys.pycache_prefix or {PYCACHE!r}\n")
    _write(root, "/etc/systemd/system/pymp-setup.service", SETUP_UNIT)
    _write(root, "/etc/systemd/system/pymp-run.service", RUN_UNIT)
    _symlink(root, "/etc/systemd/system/multi-user.target.wants/pymp-setup.service",
             "/etc/systemd/system/pymp-setup.service")
    _symlink(root, "/etc/systemd/system/default.target", "/lib/systemd/system/multi-user.target")
    _write(root, "/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf", AUTOLOGIN)
    for unit in MASK:
        _symlink(root, f"/etc/systemd/system/{unit}", "/dev/null")
    # Debian's multipath-tools is the comparison only: its `multipath -u` udev rule must not classify paths.
    rules = root / "lib/udev/rules.d"
    for rule in sorted(rules.glob("*.rules")):
        if is_debian_multipath_rule(rule.read_text(errors="replace")):
            _symlink(root, f"/etc/udev/rules.d/{rule.name}", "/dev/null")
    _write(root, "/etc/profile.d/pymp.sh", PROFILE)
    # root without password on the serial console only (no network device exists in the guest)
    shadow = root / "etc/shadow"
    lines = shadow.read_text().splitlines()
    shadow.write_text("\n".join("root::" + ln.split(":", 2)[2] if ln.startswith("root:") else ln
                                for ln in lines) + "\n")
    _write(root, "/etc/iscsi/initiatorname.iscsi", f"InitiatorName={INITIATOR}\n")
    (root / "etc/target").mkdir(exist_ok=True)  # LIO keeps persistent-reservation/ALUA state there
    (root / "etc/machine-id").write_text("")


def _mkfs(tree: Path, img: Path, log: Path) -> None:
    used = int(subprocess.run(["du", "-s", "--block-size=1M", str(tree)], capture_output=True, text=True,
                              check=True).stdout.split()[0])
    size_mb = used + used // 3 + 768  # free room for what tests write into the (snapshot) root
    _run(["mke2fs", "-q", "-t", "ext4", "-L", "pymp-root", "-E", "root_owner=0:0", "-d", str(tree),
          str(img), f"{size_mb}M"], log)


def build(force: bool = False) -> Path:
    """Build the image for the current recipe unless it is cached. Returns its directory."""
    final = image_dir()
    if is_built(final) and not force:
        return final
    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / ".lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)  # a concurrent build of the same recipe waits, then reuses it
        if is_built(final) and not force:
            return final
        t0 = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".tmp-{recipe_hash()}-", dir=cache_root()))
        try:
            log = work / "build.log"
            tree, wheels = work / "tree", work / "wheels"
            _log(f"building {final} (log {log})")
            _fetch_wheels(wheels, log)
            _log(f"wheels fetched ({time.monotonic() - t0:.0f} s); running mmdebstrap")
            venv_hook = (f'chroot "$1" python3 -m venv --system-site-packages {VENV} && '
                         f'cp -r {wheels} "$1/tmp/wheels" && '
                         f'chroot "$1" {VENV}/bin/pip install -q --no-index --find-links /tmp/wheels '
                         + " ".join(f"'{p}'" for p in PY_PACKAGES) + ' && rm -rf "$1/tmp/wheels" && '
                         # a file that does not compile (lib2to3's test data, say) only stays uncached
                         f'{{ chroot "$1" {VENV}/bin/python -X pycache_prefix={PYCACHE} -m compileall -q '
                         f'/usr/lib/python{GUEST_PY} /usr/lib/python3/dist-packages '
                         f'{VENV}/lib/python{GUEST_PY}/site-packages >/dev/null || true; }} && '
                         # an initramfs with only what finds the root disk: Debian's default (every
                         # module, 38 MB) took seconds of each TCG boot to unpack and probe
                         'echo MODULES=list > "$1/etc/initramfs-tools/conf.d/pymp.conf" && '
                         f'printf "%s\\n" {" ".join(INITRD_MODULES)} >> "$1/etc/initramfs-tools/modules" && '
                         'chroot "$1" update-initramfs -u -k all && '
                         # Debian's multipath initramfs integration, not installed: the root-on-multipath
                         # boot (tests/vm/rootboot.py) builds an image with it for comparison
                         f'mkdir -p "$1{DEBIAN_BOOT_DEBS}" && '
                         f'chroot "$1" sh -c "cd {DEBIAN_BOOT_DEBS} && '
                         'apt-get download -q multipath-tools-boot"')
            _run(["mmdebstrap", "--mode=root", "--format=directory", "--variant=apt",
                  "--include=" + ",".join(DEBS),
                  "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
                  "--dpkgopt=path-exclude=/usr/share/locale/*",
                  f"--customize-hook={venv_hook}",
                  SUITE, str(tree), *mirrors()], log)
            _log(f"debootstrapped ({time.monotonic() - t0:.0f} s); customizing")
            _customize(tree)
            boot = tree / "boot"
            vmlinuz = max(boot.glob("vmlinuz-*"))
            initrd = boot / vmlinuz.name.replace("vmlinuz", "initrd.img")
            shutil.copy2(vmlinuz, work / "vmlinuz")
            shutil.copy2(initrd, work / "initrd.img")
            _mkfs(tree, work / "rootfs.img", log)
            shutil.rmtree(tree)
            shutil.rmtree(wheels, ignore_errors=True)
            (work / "recipe.sha").write_text(recipe_hash() + "\n")
            work.chmod(0o755)
            if final.exists():
                shutil.rmtree(final)
            os.rename(work, final)  # atomic: a half-built image never sits under the final name
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        _log(f"image built in {time.monotonic() - t0:.0f} s: {final}")
        _prune(keep=final)
        return final


def _prune(keep: Path) -> None:
    """Remove images of older recipes (each is about 1.5 GB) and leftovers of interrupted builds."""
    for d in cache_root().iterdir():
        if d.is_dir() and d != keep:
            shutil.rmtree(d, ignore_errors=True)
