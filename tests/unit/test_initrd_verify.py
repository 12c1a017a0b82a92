"""`pymultipath verify`: a root directory and an initramfs image crafted from the same files, then one
difference at a time; each kind of difference is reported with its consequence for crafted present paths
(pymultipathd/initrd/inputs.py, compare.py, cli/verify_cmd.py)."""

from __future__ import annotations

import json
import os

import pytest
from test_initrd_archive import image

from pymultipathd.classify import PathFacts
from pymultipathd.cli import pymultipath, verify_cmd
from pymultipathd.initrd import compare, inputs
from pymultipathd.initrd.compare import Diff
from pymultipathd.locations import Locations

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KVER = "6.1.0-test-amd64"
W1, W2 = "36001405aaaa", "36001405bbbb"


def _package_files() -> dict[str, bytes]:
    out = {}
    for rel in inputs.CLASSIFY_FILES:
        with open(os.path.join(REPO, "pymultipathd", rel), "rb") as f:
            out[f"usr/local/lib/python3/dist-packages/pymultipathd/{rel}"] = f.read()
    return out


with open(os.path.join(REPO, "udev", inputs.OUR_RULES), "rb") as _f:
    RULES = _f.read()

LAUNCHER = (b"#!/usr/bin/python3 -IS\nimport sys\nsys.path += ['/usr/local/lib/python3/dist-packages']\n"
            b"from pymultipathd.cli.pymultipath import main\nsys.exit(main())\n")

BASE: dict[str, bytes] = {
    "etc/multipath.conf": b"defaults {\n  find_multipaths strict\n}\n",
    "etc/multipath/conf.d/10-local.conf": b"defaults {\n  user_friendly_names yes\n}\n",
    "etc/multipath/wwids": f"# header\n/{W1}/\n".encode(),
    "etc/multipath/bindings": f"mpatha {W1}\n".encode(),
    f"usr/lib/udev/rules.d/{inputs.OUR_RULES}": RULES,
    "usr/local/libexec/pymultipath-udev": b"\x7fELF front",
    "usr/local/bin/pymultipath": LAUNCHER,
    **_package_files(),
    f"usr/lib/modules/{KVER}/kernel/drivers/md/dm-multipath.ko.zst": b"ko",
    f"usr/lib/modules/{KVER}/kernel/drivers/scsi/iscsi_tcp.ko.xz": b"ko",
    f"usr/lib/modules/{KVER}/kernel/drivers/scsi/device_handler/scsi_dh_alua.ko": b"ko",
    f"usr/lib/modules/{KVER}/modules.builtin":
        b"kernel/drivers/md/dm-mod.ko\nkernel/drivers/scsi/sd_mod.ko\n",
}
LOADED = "dm_multipath 49152 0 - Live 0x0\niscsi_tcp 24576 2 - Live 0x0\nscsi_dh_alua 20480 0 - Live 0x0\n"
CMDLINE = "BOOT_IMAGE=/vmlinuz root=/dev/mapper/mpatha-part1 ro quiet\n"


def path(dev: str, wwid: str, dev_t: str, **kw: object) -> PathFacts:
    return PathFacts(dev=dev, dev_t=dev_t, wwid=wwid, vendor="LIO-ORG", product="disk0",
                     protocol="scsi:iscsi", properties={"ID_SERIAL": wwid, "ID_WWN": "0x6001405"}, **kw)


# sdb and sdc: two paths of W1 (in the wwids file, mounted now through its map); sdd: W2's only path
PATHS = [path("sdb", W1, "8:16", in_use=True, holders=("dm-0",)), path("sdc", W1, "8:32"),
         path("sdd", W2, "8:48")]


def make_root(tmp_path, files: dict[str, bytes] | None = None, *, loaded: str = LOADED,
              cmdline: str = CMDLINE) -> str:
    root = tmp_path / "root"
    for name, data in (BASE if files is None else files).items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "lib").symlink_to("usr/lib")  # merged /usr, as in the image below
    (root / "proc").mkdir()
    (root / "proc" / "modules").write_text(loaded)
    (root / "proc" / "cmdline").write_text(cmdline)
    return str(root)


def make_image(tmp_path, files: dict[str, bytes], compression: str = "gzip", name: str = "initrd.img") -> str:
    dirs = {"lib": "->usr/lib"}
    p = tmp_path / name
    p.write_bytes(image({**dirs, **files}, compression))
    return str(p)


def changed(changes: dict[str, bytes | None]) -> dict[str, bytes]:
    """BASE with files replaced (a value) or removed (None)."""
    files = dict(BASE)
    for name, value in changes.items():
        if value is None:
            files.pop(name)
        else:
            files[name] = value
    return files


def run(tmp_path, image_files: dict[str, bytes], root_files: dict[str, bytes] | None = None,
        paths: list[PathFacts] = PATHS, **root_kw: str) -> compare.Report:
    root = make_root(tmp_path, root_files, **root_kw)
    locs = Locations()
    r = inputs.read_root(root, locs, kernel=KVER)
    i = inputs.read_initrd(make_image(tmp_path, image_files), locs, kernel=KVER)
    return compare.compare(r, i, paths)


def only(report: compare.Report, kind: Diff) -> compare.Difference:
    found = [d for d in report.differences if d.kind is kind]
    assert len(found) == 1 and len(report.differences) == 1, report.differences
    return found[0]


def said(d: compare.Difference) -> dict[str, tuple[str, str, str, str]]:
    return {c.dev: (c.root.decision, c.root.rule, c.initramfs.decision, c.initramfs.rule)
            for c in d.consequences}


# ------------------------------------------------------------------------------------------ the inputs

def test_the_inputs_of_a_root_and_of_its_image_are_the_same(tmp_path):
    root = inputs.read_root(make_root(tmp_path), Locations(), kernel=KVER)
    img = inputs.read_initrd(make_image(tmp_path, BASE, "xz"), Locations(), kernel=KVER)
    for i in (root, img):
        assert i.wwids == {W1} and i.bindings == (("mpatha", W1),)
        assert i.config.default_value("user_friendly_names") is True
        assert [r.name for r in i.rules] == [inputs.OUR_RULES]
        assert i.helper.front == "/usr/local/libexec/pymultipath-udev" and i.helper.front_present
        assert i.helper.package == "/usr/local/lib/python3/dist-packages" and i.helper.fingerprint
    assert root.helper == img.helper
    assert img.config_files == (f"{img.origin}:/etc/multipath.conf",
                                f"{img.origin}:/etc/multipath/conf.d/10-local.conf")
    assert img.modules >= {"dm_multipath", "iscsi_tcp", "scsi_dh_alua", "dm_mod", "sd_mod"}
    assert root.modules == {"dm_multipath", "iscsi_tcp", "scsi_dh_alua", "dm_mod", "sd_mod"}
    assert root.cmdline[1] == "root=/dev/mapper/mpatha-part1" and img.cmdline == ()
    report = compare.compare(root, img, PATHS)
    assert report.agree and report.warnings == ()
    assert {c.dev: c.initramfs.decision for c in report.paths} == {"sdb": "yes", "sdc": "yes", "sdd": "no"}


def test_module_names():
    assert inputs.module_name("kernel/drivers/md/dm-multipath.ko.zst") == "dm_multipath"
    assert inputs.module_name("a/scsi_dh_rdac.ko") == "scsi_dh_rdac"
    assert inputs.module_name("modules.dep") is None


def test_a_config_error_names_the_file_in_the_image(tmp_path):
    report = run(tmp_path, changed({"etc/multipath.conf": b"defaults {\n  find_multipaths bogus\n}\n"}))
    d = only(report, Diff.CONFIG_ERROR)
    assert ":/etc/multipath.conf:2: find_multipaths: invalid value" in d.initramfs
    assert said(d) == {"sdb": ("yes", "wwids_file", "no", "config_error"),
                       "sdc": ("yes", "wwids_file", "no", "config_error")}


# ------------------------------------------------------------------------------ one test per kind

def test_blacklist(tmp_path):
    conf = BASE["etc/multipath.conf"] + f"blacklist {{\n  wwid {W1}\n}}\n".encode()
    d = only(run(tmp_path, changed({"etc/multipath.conf": conf})), Diff.BLACKLIST)
    assert f"only in the initramfs: wwid '{W1}'" in d.explanation
    assert said(d) == {"sdb": ("yes", "wwids_file", "no", "blacklisted:wwid"),
                       "sdc": ("yes", "wwids_file", "no", "blacklisted:wwid")}
    assert d.consequences[0].text() == ("sdb: root says multipath (rule wwids_file), initramfs says not "
                                        "multipath (rule blacklisted:wwid)")


def test_blacklist_exceptions(tmp_path):
    both = BASE["etc/multipath.conf"] + b"blacklist {\n  wwid .*\n}\n"
    root = changed({"etc/multipath.conf": both + f"blacklist_exceptions {{\n  wwid {W1}\n}}\n".encode()})
    d = only(run(tmp_path, changed({"etc/multipath.conf": both}), root), Diff.BLACKLIST_EXCEPTIONS)
    assert said(d)["sdc"] == ("yes", "wwids_file", "no", "blacklisted:wwid")


def test_find_multipaths(tmp_path):
    conf = b"defaults {\n  find_multipaths greedy\n}\n"
    d = only(run(tmp_path, changed({"etc/multipath.conf": conf})), Diff.FIND_MULTIPATHS)
    assert (d.subject, d.root, d.initramfs) == ("find_multipaths", "strict", "greedy")
    assert said(d) == {"sdd": ("no", "strict", "yes", "greedy")}


def test_force_wwids(tmp_path):
    greedy = b"defaults {\n  find_multipaths greedy\n"
    d = only(run(tmp_path, changed({"etc/multipath.conf": greedy + b"  force_wwids yes\n}\n"}),
                 changed({"etc/multipath.conf": greedy + b"}\n"})), Diff.FORCE_WWIDS)
    assert said(d) == {"sdd": ("yes", "greedy", "no", "strict")}


def test_uid_attribute(tmp_path):
    conf = BASE["etc/multipath.conf"][:-2] + b"  uid_attribute ID_OTHER\n}\n"
    d = only(run(tmp_path, changed({"etc/multipath.conf": conf})), Diff.UID_ATTRIBUTE)
    assert said(d)["sdb"] == ("yes", "wwids_file", "no", "no_wwid")


def test_devices_section(tmp_path):
    conf = (BASE["etc/multipath.conf"]
            + b'devices {\n  device {\n    vendor "LIO-ORG"\n    product ".*"\n'
              b'    product_blacklist "disk0"\n  }\n}\n')
    d = only(run(tmp_path, changed({"etc/multipath.conf": conf})), Diff.DEVICES)
    assert said(d)["sdb"] == ("yes", "wwids_file", "no", "blacklisted:device")


def test_other_keywords_affect_no_present_path(tmp_path):
    conf = BASE["etc/multipath.conf"][:-2] + b"  no_path_retry 5\n}\n"
    report = run(tmp_path, changed({"etc/multipath.conf": conf}))
    d = only(report, Diff.OTHER_KEYWORDS)
    assert d.subject == "no_path_retry" and d.consequences == ()
    assert "  no present path affected" in verify_cmd.render(report)


def test_wwids(tmp_path):
    d = only(run(tmp_path, changed({"etc/multipath/wwids": b"# header\n"})), Diff.WWIDS)
    assert f"only in the root: {W1}" in d.explanation
    assert said(d) == {"sdb": ("yes", "wwids_file", "no", "strict"),
                       "sdc": ("yes", "wwids_file", "no", "strict")}


def test_bindings(tmp_path):
    d = only(run(tmp_path, changed({"etc/multipath/bindings": f"mpathb {W1}\n".encode()})), Diff.BINDINGS)
    assert d.consequences == ()
    assert f"WWID {W1} (sdb, sdc): map mpathb in the initramfs, mpatha in the root" in d.note


def test_failed_markers_carried_by_the_image(tmp_path):
    files = {**BASE, f"run/multipath/failed_wwids/{W1}": b""}
    d = only(run(tmp_path, files), Diff.FAILED_MARKERS)
    assert said(d)["sdc"] == ("yes", "wwids_file", "no", "failed_wwid")


def test_udev_rules_missing_from_the_image(tmp_path):
    d = only(run(tmp_path, changed({f"usr/lib/udev/rules.d/{inputs.OUR_RULES}": None})),
             Diff.UDEV_RULES)
    assert d.initramfs == "missing"
    assert said(d)["sdb"] == ("yes", "wwids_file", "no", "udev_rules")


def test_competing_rules_and_rules_that_differ(tmp_path):
    files = {**BASE, "usr/lib/udev/rules.d/56-multipath.rules": b"# multipath-tools\n",
             f"usr/lib/udev/rules.d/{inputs.OUR_RULES}": RULES + b"# edited\n"}
    report = run(tmp_path, files)
    assert {(d.kind, d.subject) for d in report.differences} == {(Diff.UDEV_RULES, inputs.OUR_RULES),
                                                                 (Diff.UDEV_RULES, "56-multipath.rules")}
    assert all(d.note for d in report.differences)
    assert report.warnings == ("initramfs: /lib/udev/rules.d/56-multipath.rules of multipath-tools also "
                               "classifies disks, with another classifier; mask it (docs/classification.md)",)


def test_helper_missing_and_other_code(tmp_path):
    d = only(run(tmp_path, changed({"usr/local/libexec/pymultipath-udev": None})), Diff.HELPER)
    assert said(d)["sdc"] == ("yes", "wwids_file", "no", "helper")
    edited = {**BASE}
    key = "usr/local/lib/python3/dist-packages/pymultipathd/classify.py"
    edited[key] += b"# another version\n"
    d = only(run(tmp_path / "b", edited), Diff.HELPER)
    assert d.subject == "classifier code" and "not computed" in d.note


def test_modules(tmp_path):
    files = changed({f"usr/lib/modules/{KVER}/kernel/drivers/scsi/iscsi_tcp.ko.xz": None})
    d = only(run(tmp_path, files), Diff.MODULES)
    assert d.subject == "iscsi_tcp" and d.initramfs == "missing from the image"
    assert said(d)["sdd"] == ("no", "strict", "absent", "module:iscsi_tcp")
    files = changed({f"usr/lib/modules/{KVER}/kernel/drivers/md/dm-multipath.ko.zst": None})
    d = only(run(tmp_path / "b", files), Diff.MODULES)
    assert said(d) == {"sdb": ("yes", "wwids_file", "stuck", "module:dm_multipath"),
                       "sdc": ("yes", "wwids_file", "stuck", "module:dm_multipath")}


def test_modules_for_another_kernel_are_not_compared(tmp_path):
    files = {k.replace(KVER, "5.10.0-other"): v for k, v in BASE.items()}
    files["usr/lib/modules/5.9/modules.builtin"] = b""
    report = run(tmp_path, files)
    assert report.agree
    assert any("modules not compared" in w for w in report.warnings)


@pytest.mark.parametrize(("where", "words", "agree"), [
    ("image", "rd.multipath=0", False),
    ("boot", "rd.multipath=0", False),  # the initramfs honours it, the root does not
    ("boot", "nompath", True),  # both stages honour it
    ("image", "rd.driver.blacklist=iscsi_tcp", False),
])
def test_kernel_command_line(tmp_path, where, words, agree):
    files = {**BASE, "etc/cmdline.d/90-mp.conf": f"{words}\n".encode()} if where == "image" else BASE
    report = run(tmp_path, files, cmdline=CMDLINE + (words if where == "boot" else ""))
    assert report.agree is agree
    if words == "rd.multipath=0":
        d = only(report, Diff.CMDLINE)
        assert said(d)["sdb"] == ("yes", "wwids_file", "no", "cmdline:rd.multipath=0")
    elif words.startswith("rd.driver"):
        d = only(report, Diff.MODULES)
        assert d.initramfs == "blacklisted on its command line"


def test_the_overall_verdicts_take_every_difference_together(tmp_path):
    report = run(tmp_path, changed({"etc/multipath/wwids": b"", "etc/multipath.conf": b"defaults {\n"
                                   b"  find_multipaths on\n}\n"}))
    assert {d.kind for d in report.differences} == {Diff.WWIDS, Diff.FIND_MULTIPATHS}
    overall = {c.dev: (c.root.rule, c.initramfs.rule) for c in report.paths}
    assert overall == {"sdb": ("wwids_file", "siblings"), "sdc": ("wwids_file", "siblings"),
                       "sdd": ("strict", "single_path")}


# ------------------------------------------------------------------------------------------ the command

def _snapshot(tmp_path) -> str:
    from pymultipathd.classify import World
    from pymultipathd.cli.classify_cmd import world_to_json

    p = tmp_path / "facts.json"
    p.write_text(json.dumps(world_to_json(World(paths=tuple(PATHS)))))
    return str(p)


def _cli(tmp_path, capsys, image_path: str, *extra: str) -> tuple[int, str, str]:
    root = os.path.join(tmp_path, "root")
    if not os.path.exists(root):
        make_root(tmp_path)
    rc = pymultipath.main(["verify", "--root", root, "--kver", KVER, "--initrd", image_path,
                           "--facts", _snapshot(tmp_path), *extra], env={})
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_agree_differ_and_json(tmp_path, capsys):
    rc, out, _ = _cli(tmp_path, capsys, make_image(tmp_path, BASE))
    assert rc == 0 and "agree: the initramfs classifies the 3 present path(s) as the root does" in out
    bad = make_image(tmp_path, changed({"etc/multipath/wwids": b""}), "zstd", "bad.img")
    rc, out, _ = _cli(tmp_path, capsys, bad)
    assert rc == 1
    assert "wwids: wwids file: only in the root: 36001405aaaa" in out
    assert "  sdb: root says multipath (rule wwids_file), initramfs says not multipath (rule strict)" in out
    assert "differ: 1 difference(s) (wwids); at boot 2 of 3 present path(s)" in out
    assert "to rebuild the image:" in out
    rc, out, _ = _cli(tmp_path, capsys, bad, "--json")
    doc = json.loads(out)
    assert rc == 1 and doc["agree"] is False and doc["format"] == 1 and doc["kernel"] == KVER
    assert doc["differences"][0]["kind"] == "wwids"
    assert doc["differences"][0]["consequences"][0]["initramfs"]["rule"] == "strict"
    assert [p["dev"] for p in doc["paths"]] == ["sdb", "sdc", "sdd"]


def test_cli_unreadable_image_exits_2_naming_it(tmp_path, capsys):
    garbage = tmp_path / "garbage.img"
    garbage.write_bytes(b"this is no initramfs")
    rc, out, err = _cli(tmp_path, capsys, str(garbage))
    assert rc == 2 and out == ""
    assert err.startswith(f"pymultipath verify: {garbage}: offset 0: neither a cpio archive")
    rc, _, err = _cli(tmp_path, capsys, str(tmp_path / "missing.img"))
    assert rc == 2 and "missing.img: cannot read: No such file" in err


def test_cli_default_image_is_the_running_kernels(tmp_path, capsys, monkeypatch):
    boot = tmp_path / "boot"
    boot.mkdir()
    monkeypatch.setattr(verify_cmd, "image_candidates",
                        lambda k: [str(boot / f"initrd.img-{k}"), str(boot / f"initramfs-{k}.img")])
    make_root(tmp_path)
    args = ["verify", "--root", str(tmp_path / "root"), "--kver", KVER, "--facts", _snapshot(tmp_path)]
    assert pymultipath.main(args, env={}) == 2
    assert f"no initramfs image for kernel {KVER}: tried {boot}/initrd.img-" in capsys.readouterr().err
    (boot / f"initramfs-{KVER}.img").write_bytes(image(BASE))
    assert pymultipath.main(args, env={}) == 0
    assert f"image: {boot}/initramfs-{KVER}.img" in capsys.readouterr().out


def test_cli_fix_runs_the_generator_only_when_asked(tmp_path, capsys, monkeypatch):
    good = make_image(tmp_path, BASE, name="good.img")
    target = make_image(tmp_path, changed({"etc/multipath/wwids": b""}), name="target.img")
    monkeypatch.setattr(verify_cmd, "generator", lambda img, k: ["cp", good, img])
    rc, out, _ = _cli(tmp_path, capsys, target)
    assert rc == 1 and f"to rebuild the image: cp {good} {target}" in out
    with open(target, "rb") as f, open(good, "rb") as g:
        assert f.read() != g.read()  # nothing ran
    # --fix rebuilds the running system's image, so it refuses --root; the test's root stands in for "/"
    monkeypatch.setattr(verify_cmd, "running_root", lambda root: True)
    rc, out, err = _cli(tmp_path, capsys, target, "--fix")
    assert f"running: cp {good} {target}" in err
    assert rc == 0 and "agree:" in out.splitlines()[-1]
    monkeypatch.setattr(verify_cmd, "generator", lambda img, k: ["false"])
    bad = make_image(tmp_path, changed({"etc/multipath/wwids": b""}), name="bad.img")
    rc, _, err = _cli(tmp_path, capsys, bad, "--fix")
    assert rc == 3 and "false failed (exit 1)" in err


def test_cli_fix_refuses_another_root(tmp_path, capsys):
    rc, _, err = _cli(tmp_path, capsys, make_image(tmp_path, changed({"etc/multipath/wwids": b""})), "--fix")
    assert rc == 3 and "not with --root" in err


def test_usage_names_verify():
    assert "verify [--initrd FILE]" in pymultipath.USAGE and pymultipath.SUBCOMMANDS["verify"] == "verify_cmd"


def test_an_overrides_keyword_has_the_kind_of_its_keyword(tmp_path):
    conf = BASE["etc/multipath.conf"] + b"overrides {\n  uid_attribute ID_OTHER\n}\n"
    d = only(run(tmp_path, changed({"etc/multipath.conf": conf})), Diff.UID_ATTRIBUTE)
    assert (d.subject, d.root, d.initramfs) == ("overrides uid_attribute", "None", "ID_OTHER")
    assert said(d)["sdc"] == ("yes", "wwids_file", "no", "no_wwid")


def test_links_in_the_root_stay_inside_it(tmp_path):
    root = make_root(tmp_path)
    os.unlink(os.path.join(root, "etc/multipath/wwids"))
    os.symlink("../../../../../../etc/hostname", os.path.join(root, "etc/multipath/wwids"))
    assert inputs.DirTree(root).read("etc/multipath/wwids") is None  # ROOT/etc/hostname: none
    assert inputs.read_root(root, Locations(), kernel=KVER).wwids == frozenset()


def test_the_generator_for_each_kind_of_image(monkeypatch):
    have: set[str] = set()
    monkeypatch.setattr(verify_cmd.shutil, "which", lambda name: name if name in have else None)
    debian, dracut = f"/boot/initrd.img-{KVER}", f"/boot/initramfs-{KVER}.img"
    assert verify_cmd.generator(debian, KVER) is None
    have.add("dracut")
    assert verify_cmd.generator(debian, KVER) == ["dracut", "-f", debian, KVER]
    assert verify_cmd.generator(dracut, KVER) == ["dracut", "-f", dracut, KVER]
    have.add("update-initramfs")
    assert verify_cmd.generator(debian, KVER) == ["update-initramfs", "-u", "-k", KVER]
    have.discard("dracut")
    assert verify_cmd.generator("/tmp/other.img", KVER) is None
