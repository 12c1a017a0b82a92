"""The initramfs-tools hook and the dracut module (initramfs/), run on the host against a staging directory.

Needs Debian's initramfs-tools-core (hook-functions) and dracut-core (dracut's tools, not the `dracut`
package, which would replace initramfs-tools), which `make setup` installs, and root (a chroot): a missing
one fails the test with what to install, never skips it.
The programs are "installed" as `make install` would write them: launchers naming this interpreter and
this checkout. Kernel modules are recorded, not copied: this host has no /lib/modules.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pymultipathd.cli import launcher
from pymultipathd.initrd import fingerprint

REPO = Path(__file__).resolve().parents[2]
HOOK_FUNCTIONS = Path("/usr/share/initramfs-tools/hook-functions")
DRACUT_BASE = Path("/usr/lib/dracut")
DEPS = [p for p in sys.path if p.endswith("site-packages")]

@pytest.fixture
def needs_itools_installed() -> None:
    assert HOOK_FUNCTIONS.exists(), "initramfs-tools-core is not installed (make setup installs it)"


@pytest.fixture
def needs_dracut_installed() -> None:
    assert shutil.which("dracut") is not None and DRACUT_BASE.is_dir(), \
        "dracut-core is not installed (make setup installs it)"


needs_itools = pytest.mark.usefixtures("needs_itools_installed")
needs_dracut = pytest.mark.usefixtures("needs_dracut_installed")


def substitute(src: Path, dst: Path, bindir: Path) -> None:
    """What `make install` does to these files."""
    text = src.read_text()
    for key, value in (("@BINDIR@", str(bindir)), ("@LIBEXECDIR@", str(bindir.parent / "libexec")),
                       ("@PYTHON@", sys.executable), ("@SITE@", str(REPO))):
        text = text.replace(key, value)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(text)
    dst.chmod(0o755)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("inst")
    bindir = base / "bin"
    launcher.write(str(bindir), sys.executable, [str(REPO), *DEPS])
    src = base / "src"  # stands for / where the hook reads the configuration and the rules
    (src / "etc" / "multipath" / "conf.d").mkdir(parents=True)
    (src / "etc" / "multipath.conf").write_text("defaults {\n find_multipaths greedy\n}\n")
    (src / "etc" / "multipath" / "conf.d" / "local.conf").write_text("blacklist {\n devnode \"^vda$\"\n}\n")
    (src / "etc" / "multipath" / "wwids").write_text("/3600140512345/\n")
    (src / "etc" / "multipath" / "bindings").write_text("mpatha 3600140512345\n")
    (src / "lib" / "udev" / "rules.d").mkdir(parents=True)
    shutil.copy(REPO / "udev" / "62-pymultipath.rules", src / "lib" / "udev" / "rules.d")
    return base, bindir, src


def _size(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture(scope="module")
def hook_run(installed):
    base, bindir, src = installed
    hook = base / "hook"
    substitute(REPO / "initramfs" / "initramfs-tools" / "hooks" / "pymultipathd", hook, bindir)
    functions = base / "hook-functions"
    functions.write_text(f'. {HOOK_FUNCTIONS}\n'  # modules recorded, not copied: no /lib/modules here
                         'manual_add_modules() {\n for m in "$@"; do\n'
                         '  echo "$m" >> "$DESTDIR.modules"\n done\n}\n')
    dest = base / "dest"
    for d in ("bin", "lib", "lib64", "sbin"):  # mkinitramfs's usr-merged layout
        (dest / "usr" / d).mkdir(parents=True)
        (dest / d).symlink_to(f"usr/{d}")
    env = {**os.environ, "DESTDIR": str(dest), "verbose": "n", "version": "6.1.0-test",
           "PYMULTIPATH_HOOK_FUNCTIONS": str(functions), "PYMULTIPATH_HOOK_SRCROOT": str(src)}
    done = subprocess.run(["sh", str(hook)], capture_output=True, text=True, env=env, timeout=600)
    return done, dest


@needs_itools
def test_hook_prereqs(tmp_path):
    done = subprocess.run(["sh", str(REPO / "initramfs" / "initramfs-tools" / "hooks" / "pymultipathd"),
                           "prereqs"], capture_output=True, text=True)
    assert done.stdout.strip() == "udev"


@needs_itools
def test_hook_file_list(hook_run, installed, capsys):
    done, dest = hook_run
    assert done.returncode == 0, done.stderr
    _, bindir, _ = installed
    here = lambda p: dest / str(p).lstrip("/")  # noqa: E731
    # the interpreter, the stdlib modules imported, the third-party packages imported, our package whole
    assert here(sys.executable).exists()
    stdlib = Path(os.__file__).parent
    for rel in ("os.py", "asyncio/base_events.py", "encodings/latin_1.py", "json/decoder.py",
                "ctypes/util.py"):
        assert here(stdlib / rel).exists(), rel
    for rel in ("tkinter/__init__.py", "unittest/__init__.py", "sqlite3/__init__.py"):
        assert not here(stdlib / rel).exists(), rel  # never imported by the programs
    site = Path(DEPS[0])
    assert here(site / "pyudev" / "__init__.py").exists()
    assert not here(site / "pyroute2").exists() and not here(site / "pydantic").exists()
    assert here(REPO / "pymultipathd" / "classify.py").exists()
    assert here(REPO / "pymultipathd" / "config" / "hwtable.conf").exists()
    for name in ("pymultipath", "pymultipathd", "pympathpersist"):
        assert here(bindir / name).exists()
    # what they classify with, at the root's paths
    for rel in ("etc/multipath.conf", "etc/multipath/conf.d/local.conf", "etc/multipath/wwids",
                "etc/multipath/bindings", "usr/lib/udev/rules.d/62-pymultipath.rules"):
        assert (dest / rel).is_file(), rel
    assert (dest / "usr/sbin/ldconfig").exists()  # ctypes.util.find_library runs it (pyudev)
    mods = (dest.parent / "dest.modules").read_text().split()
    for m in ("dm-mod", "dm-multipath", "scsi_dh_alua", "scsi_dh_emc", "scsi_dh_rdac", "scsi_dh_hp_sw",
              "sd_mod", "virtio_scsi"):
        assert m in mods
    data = fingerprint.parse((dest / "usr/lib/pymultipathd/initramfs/fingerprint.json").read_text())
    assert data["config"]["find_multipaths"] == "greedy"  # type: ignore[index]
    assert data["config"]["blacklist"]["devnode"] == ["^vda$"]  # type: ignore[index]
    assert data["wwids"]["list"] == ["3600140512345"] and data["rules"] and data["code"]  # type: ignore[index]
    assert (dest / "usr/lib/pymultipathd/initramfs/root-wwids").exists()
    with capsys.disabled():
        print(f"\n  initramfs-tools hook: {sum(1 for _ in dest.rglob('*'))} entries, {_size(dest)} bytes "
              f"(python runtime, package, config, rules; modules not copied on this host)")


@needs_itools
def test_hook_image_runs_the_programs(hook_run, installed):
    """The copied subset is enough: the daemon's and udev helper's imports, pyudev finding libudev."""
    done, dest = hook_run
    assert os.geteuid() == 0, "the chroot into the image needs root (as the VM tier does)"
    subprocess.run(["ldconfig", "-r", str(dest)], check=False, capture_output=True)
    (dest / "dev").mkdir(exist_ok=True)
    null = dest / "dev" / "null"
    made = null.exists() or subprocess.run(["mknod", "-m", "666", str(null), "c", "1", "3"]).returncode == 0
    assert made, "cannot make dev/null for the chroot"
    probe = ("import sys; sys.path += sys.argv[1:]; import pymultipathd.daemon.main, "
             "pymultipathd.cli.udev_helper, pymultipathd.cli.assemble_cmd, pyudev; pyudev.Context(); "
             "b'x'.decode('latin-1'); print('ok')")
    run = subprocess.run(["chroot", str(dest), sys.executable, "-IS", "-c", probe, str(REPO), *DEPS],
                         capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "ok", run.stderr
    _, bindir, _ = installed
    run = subprocess.run(["chroot", str(dest), str(bindir / "pymultipath"), "-t"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0 and "find_multipaths" in run.stdout, run.stderr


# ------------------------------------------------------------------------------------------- dracut

@pytest.fixture(scope="module")
def dracut_base(installed, tmp_path_factory):
    """A dracut base directory: the installed one's files and modules, and ours as `make install` puts it."""
    _, bindir, _ = installed
    base = tmp_path_factory.mktemp("dracut")
    for f in DRACUT_BASE.iterdir():
        if f.name != "modules.d":
            (base / f.name).symlink_to(f)
    (base / "modules.d").mkdir()
    for m in (DRACUT_BASE / "modules.d").iterdir():
        if m.name != "90pymultipathd":
            (base / "modules.d" / m.name).symlink_to(m)
    ours = base / "modules.d" / "90pymultipathd"
    sources = [*(REPO / "initramfs" / "dracut" / "90pymultipathd").iterdir(),
               REPO / "initramfs" / "pymultipathd-boot"]
    for f in sources:
        substitute(f, ours / f.name, bindir)
    return base


@needs_dracut
def test_dracut_lists_the_module(dracut_base):
    done = subprocess.run(["dracut", "--list-modules", "--no-kernel"], capture_output=True, text=True,
                          env={**os.environ, "dracutbasedir": str(dracut_base)}, timeout=300)
    assert "pymultipathd" in done.stdout.split(), done.stderr


@needs_dracut
def test_dracut_builds_an_image_with_the_module(dracut_base, tmp_path):
    """dracut --no-kernel with our module only, into a temporary output (nothing under /boot): the staging
    directory (--keep) holds what install() put there."""
    out = tmp_path / "initrd.img"
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(["dracut", "--no-kernel", "--no-hostonly", "-m", "pymultipathd", "--no-compress",
                           "--tmpdir", str(work), "--keep", "--force", str(out)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "dracutbasedir": str(dracut_base)})
    assert done.returncode == 0 and out.exists(), done.stderr[-3000:]
    [stage] = work.glob("dracut.*/initramfs")
    for rel in ("usr/lib/pymultipathd/initramfs/boot", "usr/lib/pymultipathd/initramfs/fingerprint.json",
                "usr/lib/pymultipathd/initramfs/root-wwids",
                "usr/lib/dracut/hooks/pre-trigger/90-pymultipathd-start.sh",
                "usr/lib/dracut/hooks/cleanup/02-pymultipathd-stop.sh",
                "usr/lib/dracut/hooks/initqueue/finished/90-pymultipathd-finished.sh"):
        assert (stage / rel).exists(), rel
    here = lambda p: stage / str(p).lstrip("/")  # noqa: E731
    assert here(sys.executable).exists()
    assert here(REPO / "pymultipathd" / "daemon" / "main.py").exists()
    assert here(Path(os.__file__)).exists()
    assert json.loads((stage / "usr/lib/pymultipathd/initramfs/fingerprint.json").read_text())["format"] == 1
