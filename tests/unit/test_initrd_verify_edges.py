"""`pymultipath verify` on images and roots that are valid but unusual, or hostile: content reached through
links, what is held in memory, options of the boot loader, harmless differences, non-UTF-8 and control
characters in what an image says, --fix with --json, another kernel's image, the generator's timeout."""

from __future__ import annotations

import json
import os
import time

import pytest
from test_initrd_archive import cpio_entry, image
from test_initrd_verify import BASE, CMDLINE, KVER, LOADED, W1, _cli, changed, make_image, run

from pymultipathd import store
from pymultipathd.cli import pymultipath, verify_cmd
from pymultipathd.initrd import archive, compare, inputs
from pymultipathd.initrd.compare import Decision, Diff
from pymultipathd.locations import Locations

WWIDS = "etc/multipath/wwids"


def _inputs(tmp_path, files: dict[str, bytes | str], **kw: object) -> inputs.Inputs:
    return inputs.read_initrd(make_image(tmp_path, files), Locations(), kernel=KVER, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ what is held

def test_only_the_files_read_are_held_within_a_budget(tmp_path):
    bulk = {f"etc/big{i}": b"x" * (256 << 10) for i in range(8)} | {"run/pymultipathd-junk": b"y" * 100_000}
    path = make_image(tmp_path, {**BASE, **bulk})
    keep = inputs.wanted(Locations())
    img = archive.read_image(path, keep=keep)
    held = sum(len(e.data) for e in img.entries.values() if e.data is not None)
    assert all(img.entries[n].data is None for n in bulk)
    # exactly the configuration, wwids, bindings, rules, launcher, modules.builtin and classifying modules
    assert held == sum(len(v) for k, v in BASE.items() if keep(k))
    r = inputs.read_initrd(path, Locations(), kernel=KVER, limits=archive.Limits(max_kept=1 << 20))
    assert r.wwids == {W1}
    huge = changed({"etc/multipath.conf": b"# pad\n" * 400_000})
    with pytest.raises(archive.ArchiveError, match="hold more than 1048576 bytes"):
        _inputs(tmp_path, huge, limits=archive.Limits(max_kept=1 << 20))


def test_a_symlinked_wwids_file_and_configuration(tmp_path):
    files = changed({WWIDS: None, "etc/multipath.conf": None})
    files |= {"var/lib/multipath/wwids": BASE[WWIDS], WWIDS: "->/var/lib/multipath/wwids",
              "usr/share/mp.conf": BASE["etc/multipath.conf"], "etc/multipath.conf": "->../usr/share/mp.conf"}
    r = _inputs(tmp_path, files)
    assert r.wwids == {W1} and r.config is not None and r.config.find_multipaths() == "strict"


@pytest.mark.parametrize("data_first", [False, True])
def test_a_hard_linked_wwids_file_whose_data_comes_with_another_name(tmp_path, data_first):
    links = [cpio_entry(WWIDS, data=b"", ino=77, nlink=2),
             cpio_entry("usr/wwids.bak", data=BASE[WWIDS], ino=77, nlink=2)]
    extra = b"".join(reversed(links) if data_first else links) + cpio_entry("TRAILER!!!", 0)
    path = tmp_path / "initrd.img"
    path.write_bytes(image({"lib": "->usr/lib", **changed({WWIDS: None})}, "none") + extra)
    assert inputs.read_initrd(str(path), Locations(), kernel=KVER).wwids == {W1}


# ------------------------------------------------------------------------------------------ judging

def test_rd_multipath_default_from_the_boot_loader_is_a_warning(tmp_path):
    report = run(tmp_path, BASE, cmdline=CMDLINE.strip() + " rd.multipath=default\n")
    assert report.agree
    assert any("rd.multipath=default (from the boot loader's line)" in w for w in report.warnings)


def test_reordered_blacklist_entries_agree(tmp_path):
    bl = b"blacklist {\n  wwid 3600a\n  devnode sdz\n}\n"
    lb = b"blacklist {\n  devnode sdz\n  wwid 3600a\n}\n"
    root = changed({"etc/multipath.conf": BASE["etc/multipath.conf"] + bl})
    assert run(tmp_path, changed({"etc/multipath.conf": BASE["etc/multipath.conf"] + lb}), root).agree


def test_a_loaded_adapter_driver_no_present_path_needs_is_a_warning(tmp_path):
    report = run(tmp_path, BASE, loaded=LOADED + "lpfc 90000 0 - Live 0x0\n")
    assert report.agree
    assert any("kernel module lpfc is loaded in the root but missing from the image" in w
               for w in report.warnings)


def test_protocol_subsections_are_compared(tmp_path):
    conf = BASE["etc/multipath.conf"] + b'overrides {\n  protocol {\n    type "scsi:iscsi"\n' \
                                        b'    fast_io_fail_tmo 7\n  }\n}\n'
    report = run(tmp_path, changed({"etc/multipath.conf": conf}))
    [d] = report.differences
    assert d.kind is Diff.OTHER_KEYWORDS and d.subject == "overrides' protocol subsections"
    assert isinstance(report.paths[0].root.decision, Decision)


def test_the_store_parses_text():
    assert store.wwids_from_text(f"# c\n/{W1}/\n/{W1}/\nbad\n", "w") == [W1]
    assert store.bindings_from_text(f"mpatha {W1}\nmpathb {W1}\n", "b") == {"mpatha": W1}


# ----------------------------------------------------------------------------------------- printing

def test_a_config_error_prints_both_sides(tmp_path, capsys):
    bad = make_image(tmp_path, changed({"etc/multipath.conf": b"defaults {\n  find_multipaths bogus\n}\n"}))
    rc, out, _ = _cli(tmp_path, capsys, bad)
    assert rc == 1 and "  root: loads" in out
    assert ":/etc/multipath.conf:2: find_multipaths: invalid value" in out


def test_bytes_that_are_not_utf8_and_control_characters_are_escaped(tmp_path, capsys):
    name = "etc/multipath/conf.d/x\n\x1b[2Jforged.conf"
    files = changed({WWIDS: b"/36\xff00/\n"}) | {name: b"defaults {\n  find_multipaths bogus\n}\n"}
    img = make_image(tmp_path, files)
    rc, out, _ = _cli(tmp_path, capsys, img)
    assert rc == 1 and "\x1b" not in out and "\\x1b[2Jforged.conf" in out
    assert not any(line.startswith("[2Jforged") for line in out.splitlines())
    out.encode("utf-8")  # a strict UTF-8 stdout takes it
    rc, out, _ = _cli(tmp_path, capsys, img, "--json")
    out.encode("utf-8")
    doc = json.loads(out)
    assert rc == 1 and any("36\\xff00" in d["explanation"] for d in doc["differences"])


def test_fix_with_json_prints_one_document(tmp_path, capsys, monkeypatch):
    good = make_image(tmp_path, BASE, name="good.img")
    target = make_image(tmp_path, changed({WWIDS: b""}), name="target.img")
    monkeypatch.setattr(verify_cmd, "generator",
                        lambda img, k: ["sh", "-c", f"echo $((6*7))-says; cp {good} {img}"])
    monkeypatch.setattr(verify_cmd, "running_root", lambda root: True)
    rc, out, err = _cli(tmp_path, capsys, target, "--fix", "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["agree"] is True and "42-says" in err and "42-says" not in out
    assert doc["fix"]["result"] == "rebuilt" and doc["fix"]["differences_before"][0]["kind"] == "wwids"


def test_another_kernels_image(tmp_path, capsys, monkeypatch):
    boot = tmp_path / "boot"
    boot.mkdir()
    other = str(boot / "initramfs-9.9.9-other.img")
    with open(make_image(tmp_path, changed({WWIDS: b""})), "rb") as f:
        data = f.read()
    with open(other, "wb") as f:
        f.write(data)
    rc, _, err = _cli(tmp_path, capsys, other)  # _cli gives --kver KVER
    assert rc == 2 and f"named for kernel 9.9.9-other, --kver says {KVER}" in err
    seen = []
    monkeypatch.setattr(verify_cmd, "generator", lambda img, k: seen.append(k) or ["gen", k])
    args = ["verify", "--root", str(tmp_path / "root"), "--initrd", other, "--facts",
            str(tmp_path / "facts.json")]
    assert pymultipath.main(args, env={}) == 1
    assert seen == ["9.9.9-other"] and "to rebuild the image: gen 9.9.9-other" in capsys.readouterr().out
    anon = str(boot / "custom.img")
    with open(anon, "wb") as f:
        f.write(data)
    monkeypatch.setattr(verify_cmd, "running_root", lambda root: True)
    args[args.index(other)] = anon
    assert pymultipath.main([*args, "--fix"], env={}) == 3
    assert "is not in its name: give --kver" in capsys.readouterr().err


@pytest.mark.parametrize("size", ["-1", "0", "lots"])
def test_max_size_must_be_a_positive_number(tmp_path, capsys, size):
    with pytest.raises(SystemExit) as info:
        _cli(tmp_path, capsys, make_image(tmp_path, BASE), "--max-size", size)
    assert info.value.code == 2


def test_the_generator_and_its_children_end_at_the_timeout(tmp_path, monkeypatch):
    pidfile = tmp_path / "pid"
    monkeypatch.setattr(verify_cmd, "GENERATOR_TIMEOUT", 1)
    rc, why = verify_cmd._fix(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"])
    assert rc == verify_cmd.FIX_FAILED and "took longer than 1 s" in why
    pid = int(pidfile.read_text())
    for _ in range(100):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ", 1)[1].startswith("Z"):
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the generator's child still runs")
    assert os.path.exists(pidfile) and compare
