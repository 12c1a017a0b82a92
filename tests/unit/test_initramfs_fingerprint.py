"""The initramfs fingerprint (pymultipathd/initrd/fingerprint.py) and the manifest's pure parts
(pymultipathd/initrd/manifest.py): what the image is compared by, and what goes into it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pymultipathd import locations
from pymultipathd.config.load import parse_text
from pymultipathd.initrd import fingerprint as fp
from pymultipathd.initrd import manifest

RULES = 'IMPORT{program}="/usr/local/libexec/pymultipath-udev -u %k"\n'
CONF = "defaults {\n find_multipaths greedy\n polling_interval 5\n}\nblacklist {\n devnode \"^sda$\"\n}\n"


def make(conf: str = CONF, wwids: str | None = "/3600a/\n/3600b/\n", rules: str | None = RULES,
         code: str | None = "c0de", bindings: str | None = "mpatha 3600a\n") -> dict[str, object]:
    return fp.compute(parse_text(conf), wwids, rules, code, bindings_text=bindings)


def test_same_inputs_agree_and_survive_json():
    a, b = make(), make()
    assert fp.compare(a, b) == []
    assert fp.compare(fp.parse(json.dumps(a)), b) == []


def test_file_names_and_comments_do_not_count():
    a = fp.compute(parse_text(CONF, "/image/etc/multipath.conf"), "/3600a/\n/3600b/\n", RULES, "c0de")
    b = fp.compute(parse_text("# a comment\n" + CONF, "/etc/multipath.conf"), "# hdr\n/3600b/\n/3600a/\n",
                   RULES, "c0de")
    assert fp.compare(a, b) == []


def test_find_multipaths_differs():
    diffs = fp.compare(make(CONF.replace("greedy", "strict")), make())
    assert [(d.kind, d.subject, d.initramfs, d.root) for d in diffs] == [
        (fp.Kind.CONFIG, "find_multipaths", "strict", "greedy")]


def test_keyword_and_blacklist_differences_are_named():
    image = make(CONF.replace("polling_interval 5", "polling_interval 10").replace("^sda$", "^sdb$"))
    diffs = {d.subject: d for d in fp.compare(image, make())}
    assert set(diffs) == {"defaults: polling_interval", "blacklist: devnode"}
    assert str(diffs["defaults: polling_interval"]) == "defaults: polling_interval: initramfs 10, root 5"
    assert diffs["blacklist: devnode"].initramfs == "^sdb$"


def test_devices_section_differs():
    dev = CONF + 'devices {\n device {\n  vendor "X"\n  product "Y"\n  no_path_retry queue\n }\n}\n'
    assert [d.subject for d in fp.compare(make(dev), make())] == ["devices section"]


def test_wwids_bindings_rules_code():
    image = make(wwids="/3600a/\n/3600c/\n", rules=None, code="old", bindings="mpatha 3600c\n")
    diffs = {d.kind: d for d in fp.compare(image, make())}
    assert set(diffs) == {fp.Kind.WWIDS, fp.Kind.BINDINGS, fp.Kind.RULES, fp.Kind.CODE}
    assert diffs[fp.Kind.WWIDS].initramfs == "only: 3600c" and diffs[fp.Kind.WWIDS].root == "only: 3600b"
    assert diffs[fp.Kind.BINDINGS].subject == "bindings: mpatha"
    assert diffs[fp.Kind.RULES].initramfs == "absent"


def test_long_lists_go_by_digest():
    many = "".join(f"/36{i:06d}/\n" for i in range(fp.LIST_MAX + 1))
    a, b = make(wwids=many), make(wwids=many + "/3699/\n")
    assert "list" not in a["wwids"]  # type: ignore[operator]
    [d] = fp.compare(a, b)
    assert d.kind is fp.Kind.WWIDS and "entries" in d.root


def test_config_that_did_not_load():
    a = fp.compute(None, None, None, None, config_error="bad line")
    [d] = fp.compare(a, fp.compute(parse_text(""), None, None, None))
    assert (d.kind, d.initramfs, d.root) == (fp.Kind.CONFIG, "did not load", "loaded")


@pytest.mark.parametrize("text,why", [
    ("not json", "not JSON"), ("[]", "not a JSON object"), ('{"format": 2}', "format 2"),
    ('{"format": 1, "config": null, "wwids": {}, "bindings": {}, "rules": 3, "code": null}', "'rules'"),
])
def test_parse_refuses(text, why):
    with pytest.raises(fp.FingerprintError, match=why):
        fp.parse(text)


def test_format_mismatch_is_one_difference():
    [d] = fp.compare({"format": 2}, make())
    assert d.kind is fp.Kind.FORMAT


# ------------------------------------------------------------------------------------------- the check

@pytest.fixture
def root_files(tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "multipath.conf").write_text(CONF)
    (etc / "wwids").write_text("/3600a/\n")
    locs = locations.Locations(config_file=str(etc / "multipath.conf"), config_dir=str(etc / "conf.d"),
                               wwids_file=str(etc / "wwids"), bindings_file=str(etc / "bindings"),
                               run_dir=str(tmp_path / "run"))
    previous = locations.install(locs)
    yield tmp_path
    locations.install(previous)


def _image_fingerprint(root_files) -> str:
    """What the boot script leaves: here, the root's own fingerprint (an image built from this root)."""
    config = parse_text(CONF)
    own = fp._own_package()
    data = fp.of_tree("/", own, stage="initramfs", config=config)
    path = root_files / "run" / fp.FILE_NAME
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


def test_check_absent_file_says_nothing(root_files):
    assert fp.check_initramfs_fingerprint(parse_text(CONF)) == []


def test_check_agrees_then_names_a_change(root_files):
    _image_fingerprint(root_files)
    assert fp.check_initramfs_fingerprint(parse_text(CONF)) == []
    (root_files / "etc" / "wwids").write_text("/3600a/\n/3600z/\n")
    warnings = fp.check_initramfs_fingerprint(parse_text(CONF))
    assert len(warnings) == 2
    assert "1 difference" in warnings[0] and "pymultipath verify --fix" in warnings[0]
    assert warnings[1] == "initramfs fingerprint: wwids: initramfs only: nothing, root only: 3600z"


def test_check_tolerates_garbage_and_size(root_files):
    path = root_files / "run" / fp.FILE_NAME
    path.parent.mkdir()
    path.write_bytes(b"\xff\x00garbage")
    [w] = fp.check_initramfs_fingerprint(parse_text(CONF))
    assert "not JSON" in w and str(path) in w
    path.write_bytes(b" " * (fp.MAX_FILE + 1))
    [w] = fp.check_initramfs_fingerprint(parse_text(CONF))
    assert "larger than" in w
    os.chmod(path, 0)
    path.unlink()
    path.mkdir()  # unreadable as a file
    [w] = fp.check_initramfs_fingerprint(parse_text(CONF))
    assert "cannot read" in w


def test_main_writes_an_image_fingerprint(tmp_path):
    image = tmp_path / "image"
    (image / "etc" / "multipath").mkdir(parents=True)
    (image / "etc" / "multipath.conf").write_text(CONF)
    (image / "etc" / "multipath" / "wwids").write_text("/3600a/\n")
    (image / "usr" / "lib" / "udev" / "rules.d").mkdir(parents=True)
    (image / "usr" / "lib" / "udev" / "rules.d" / "62-pymultipath.rules").write_text(RULES)
    (image / "lib").symlink_to("usr/lib")
    out = tmp_path / "fp.json"
    previous = locations.current()
    try:
        assert fp.main(["--root", str(image), "--kernel", "6.1.0-test", "--output", str(out)]) == 0
    finally:
        locations.install(previous)
    data = fp.parse(out.read_text())
    assert data["stage"] == "initramfs" and data["kernel"] == "6.1.0-test"
    assert data["config"]["find_multipaths"] == "greedy"  # type: ignore[index]
    assert data["wwids"]["list"] == ["3600a"]  # type: ignore[index]
    assert data["rules"] is not None and data["code"] is None


# ------------------------------------------------------------------------------------------- manifest

def test_launcher_python():
    text = "#!/usr/bin/python3 -IS\n# x\nimport sys\nsys.path += ['/site', '/deps']\nfrom a import main\n"
    assert manifest.launcher_python(text) == ("/usr/bin/python3", ["/site", "/deps"])
    for bad in ("", "import sys\n", "#!/usr/bin/python3\nimport sys\n"):
        with pytest.raises(manifest.ManifestError):
            manifest.launcher_python(bad)


def _link(path, target):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


@pytest.fixture
def sysfs(tmp_path):
    """dm-0 (mpath) over sdb and sdc: sdb behind virtio_scsi on virtio_pci, sdc behind an LSI HBA."""
    s = tmp_path / "sys"
    mod = s / "module"
    for m in ("sd_mod", "virtio_scsi", "virtio_pci", "mpt3sas"):
        (mod / m).mkdir(parents=True)
    pci = s / "devices" / "pci0000:00"
    virt = pci / "0000:00:04.0" / "virtio1" / "host2" / "target2:0:0" / "2:0:0:1"
    lsi = pci / "0000:00:05.0" / "host3" / "target3:0:0" / "3:0:0:1"
    for dev, drivers in ((virt, ((virt, "sd_mod"), (virt.parents[2], "virtio_scsi"),
                                 (virt.parents[3], "virtio_pci"))),
                         (lsi, ((lsi, "sd_mod"), (lsi.parents[2], "mpt3sas")))):
        dev.mkdir(parents=True)
        for where, m in drivers:
            drv = s / "bus" / "x" / "drivers" / m
            drv.mkdir(parents=True, exist_ok=True)
            if not (drv / "module").exists():
                _link(drv / "module", mod / m)
            if not (where / "driver").exists():
                _link(where / "driver", drv)
    for name, dev in (("sdb", virt), ("sdc", lsi)):
        (s / "block" / name).mkdir(parents=True)
        _link(s / "block" / name / "device", dev)
    (s / "block" / "dm-0" / "dm").mkdir(parents=True)
    (s / "block" / "dm-0" / "dm" / "uuid").write_text("mpath-3600140512345\n")
    (s / "block" / "dm-0" / "slaves").mkdir()
    for name in ("sdb", "sdc"):
        _link(s / "block" / "dm-0" / "slaves" / name, s / "block" / name)
    (s / "block" / "dm-1" / "dm").mkdir(parents=True)
    (s / "block" / "dm-1" / "dm" / "uuid").write_text("LVM-abc\n")  # not a multipath map
    return s


def test_transport_modules_from_sysfs(sysfs):
    assert manifest.multipath_maps(str(sysfs)) == {"dm-0": "3600140512345"}
    assert manifest.drivers_of(str(sysfs), "sdb") == ["sd_mod", "virtio_scsi", "virtio_pci"]
    assert manifest.transport_modules(str(sysfs)) == ["sd_mod", "virtio_scsi", "virtio_pci", "mpt3sas"]
    (sysfs / "class" / "iscsi_session" / "session1").mkdir(parents=True)
    assert manifest.transport_modules(str(sysfs))[-1] == "iscsi_tcp"
    mods = [v for k, v in manifest.kernel_items(str(sysfs)) if k == "module"]
    assert mods[:2] == ["dm-mod", "dm-multipath"] and "mpt3sas" in mods and len(mods) == len(set(mods))


def test_no_sysfs_gives_the_base_modules(tmp_path):
    assert manifest.kernel_items(str(tmp_path)) == [("module", m) for m in manifest.BASE_MODULES]


def _compare(config_text: str) -> list[str]:
    """What the daemon's start-up comparison warns of (Daemon.compare_initramfs, as run after discovery)."""
    import asyncio

    from pymultipathd.daemon import main as daemon_main

    daemon = daemon_main.Daemon(daemon_main.parse_args([]))
    asyncio.run(daemon.compare_initramfs(parse_text(config_text)))
    return daemon.initramfs_warnings


def test_the_daemon_compares_only_when_the_initramfs_left_a_fingerprint(root_files):
    assert _compare(CONF) == []
    _image_fingerprint(root_files)
    (root_files / "etc" / "wwids").write_text("/3600a/\n/3600z/\n")
    warnings = _compare(CONF)
    assert warnings[1] == "initramfs fingerprint: wwids: initramfs only: nothing, root only: 3600z"


def test_without_a_fingerprint_the_daemon_never_imports_hashlib(tmp_path):
    # hashlib brings OpenSSL: megabytes of the daemon's memory for a comparison that has nothing to compare
    code = ("import asyncio, sys\n"
            "from pymultipathd import locations\n"
            "from pymultipathd.config.load import parse_text\n"
            "from pymultipathd.daemon import main\n"
            f"locations.install(locations.Locations(run_dir={str(tmp_path)!r}))\n"
            "daemon = main.Daemon(main.parse_args([]))\n"
            "asyncio.run(daemon.compare_initramfs(parse_text('')))\n"
            "assert daemon.initramfs_warnings == []\n"
            "print(sorted(m for m in ('hashlib', '_hashlib', 'pymultipathd.initrd.fingerprint')"
            " if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
