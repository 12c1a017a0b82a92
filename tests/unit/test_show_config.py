"""`pymultipath -t` / `-T`: effective configuration in multipath.conf syntax, errors with file:line."""

import pytest

from pymultipathd.blacklist import check
from pymultipathd.cli import pymultipath, show_config
from pymultipathd.config import hwtable, keywords, load_config, parse_text

MAIN = """
# an administrator's file
defaults {
    find_multipaths smart
    polling_interval 10
    user_friendly_names yes
    verbosity 2
}
blacklist {
    devnode "^vd[a-z]"
    wwid "#!"
}
devices {
    device {
        vendor "LIO-ORG"
        product "TCMU device"
        no_path_retry queue
        product_blacklist "^Ctl"
    }
}
"""
DROPIN = """
blacklist_exceptions {
    wwid "^3600a"
    device {
        vendor "2.5"" SSD"
    }
}
overrides {
    features "1 queue_if_no_path"
}
multipaths {
    multipath {
        wwid 3600a0001
        alias "data base"
    }
}
"""


@pytest.fixture
def files(tmp_path, monkeypatch):
    main = tmp_path / "multipath.conf"
    main.write_text(MAIN)
    confd = tmp_path / "conf.d"
    confd.mkdir()
    (confd / "50-site.conf").write_text(DROPIN)
    monkeypatch.setenv("PYMULTIPATH_CONF", str(main))
    monkeypatch.setenv("PYMULTIPATH_CONFDIR", str(confd))
    return main, confd


def run(argv, capsys):
    rc = show_config.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def effective(cfg):
    queries = [
        {},
        {"wwid": "3600a0001"},
        {"vendor": "LIO-ORG", "product": "TCMU device"},
        {"vendor": "NVME", "product": "x"},
    ]
    devices = [
        dict(devnode="vda"),
        dict(devnode="sda", wwid="3600a1", vendor="LIO-ORG", product="Ctl 1"),
        dict(devnode="sda", wwid="1#!"),
        dict(devnode="sda", vendor='2.5" SSD', product="Ctl"),
        dict(devnode="loop1"),
        dict(devnode="sda", properties={"ID_SERIAL": "x"}),
    ]
    return (
        [cfg.resolve(kw.name, **q) for kw in keywords.attributes("defaults") for q in queries],
        [check(cfg, **d) for d in devices],
        cfg.find_multipaths(),
    )


def test_t_prints_everything_and_parses_back(files, capsys):
    main, _ = files
    rc, out, err = run(["-t"], capsys)
    # verbosity has no effect here (the daemon's -v sets the log level): the administrator is told so
    assert rc == 0 and err == (f"pymultipath: warning: {main}:7: verbosity: no effect in pymultipathd: "
                               f"{keywords.attribute('verbosity').unsupported}\n")
    assert '\tverbosity 2  # no effect in pymultipathd: ' in out  # the file's own, marked
    assert '\t# strict_timing "no"  # no effect in pymultipathd: ' in out  # a built-in one, commented out
    assert '\tfind_multipaths "smart"\n' in out
    assert "\tmax_polling_interval 40\n" in out  # derived default shown
    assert '\tpath_selector "service-time 0"\n' in out
    assert '\tdevnode "!^(sd[a-z]|dasd[a-z]|nvme[0-9])"\n' in out  # built-in blacklist
    assert '\tproperty "(SCSI_IDENT_|ID_WWN)"\n' in out
    assert '\t\tvendor "2.5"" SSD"\n' in out
    assert '\t\talias "data base"\n' in out
    assert '\t\tvendor "PURE"\n' in out  # built-in hardware table
    original = load_config()
    shown = parse_text(out, "shown.conf")
    # read back, it warns about what the administrator set, and about the unsupported keywords of the
    # hardware table's entries, printed whole (they are written in a file now); a default nobody set is quiet
    hardware = [(k, keywords.lookup("device", k).no_effect()) for e in hwtable.entries() for k in e
                if keywords.lookup("device", k).unsupported]
    assert hardware  # else this test proves less than it says
    assert sorted((w.keyword, w.text) for w in shown.warnings) == sorted(
        [(w.keyword, w.text) for w in original.warnings] + hardware)
    assert effective(shown) == effective(original)
    rc, out2, _ = run(["-t"], capsys)
    assert out2 == out


def test_T_prints_only_what_differs_from_builtins(files, capsys):
    rc, out, err = run(["-T"], capsys)
    assert rc == 0
    assert "find_multipaths" in out and "polling_interval 10" in out and "user_friendly_names" in out
    assert "verbosity" not in out  # set, but to the built-in value
    assert "max_polling_interval" not in out and "path_selector" not in out
    assert "PURE" not in out and "SCSI_IDENT_" not in out and "nvme[0-9]" not in out
    assert effective(parse_text(out)) == effective(load_config())


def test_no_config_files_prints_builtin_defaults(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYMULTIPATH_CONF", str(tmp_path / "none"))
    monkeypatch.setenv("PYMULTIPATH_CONFDIR", str(tmp_path / "none.d"))
    rc, out, _ = run(["-T"], capsys)
    assert rc == 0 and out == (
        "defaults {\n}\nblacklist {\n}\nblacklist_exceptions {\n}\ndevices {\n}\n"
        "overrides {\n}\nmultipaths {\n}\n"
    )
    rc, out, _ = run(["-t"], capsys)
    assert rc == 0 and '\tfind_multipaths "strict"\n' in out


def test_config_error_goes_to_stderr_with_file_line_and_exit_1(files, capsys):
    main, confd = files
    (confd / "60-bad.conf").write_text("defaults {\n\tno_path_retry sometimes\n}\n")
    rc, out, err = run(["-t"], capsys)
    assert rc == 1 and out == ""
    assert f"{confd / '60-bad.conf'}:2: no_path_retry: invalid value 'sometimes'" in err


def test_syntax_error_exit_1(files, capsys):
    main, _ = files
    main.write_text("defaults {\n polling_interval 3\n")
    rc, out, err = run(["-t"], capsys)
    assert rc == 1 and f"{main}:1: defaults: section is not closed" in err


def test_warnings_go_to_stderr_output_still_printed(files, capsys):
    main, _ = files
    main.write_text("defaults {\n bogus_keyword 1\n}\n")
    rc, out, err = run(["-T"], capsys)
    assert rc == 0 and out.startswith("defaults {")
    assert f"warning: {main}:2: bogus_keyword: unknown keyword" in err


def test_through_the_dispatcher_with_config_options(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PYMULTIPATH_CONF", raising=False)
    monkeypatch.delenv("PYMULTIPATH_CONFDIR", raising=False)
    conf = tmp_path / "x.conf"
    conf.write_text("defaults {\n alias_prefix disk\n}\n")
    rc = pymultipath.main(["--config", str(conf), "--config-dir", str(tmp_path / "none"), "-T"])
    out, _ = capsys.readouterr()
    assert rc == 0 and '\talias_prefix "disk"\n' in out


@pytest.mark.parametrize("argv", [[], ["-x"], ["-t", "extra"]])
def test_usage_errors(argv, capsys):
    assert show_config.main(argv) == 2


def test_shipped_example_config_parses_without_warnings():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(str(root / "conf" / "multipath.conf"), str(root / "no-such-dir"))
    assert cfg.warnings == [] and cfg.find_multipaths() == "strict"


def test_configuration_doc_lists_every_keyword():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    missing = [kw.name for kw in keywords.KEYWORDS if f"`{kw.name}`" not in doc]
    assert missing == []


def test_render_blacklists_names_origins():
    from pymultipathd.config.render import render_blacklists

    text = render_blacklists(parse_text('blacklist {\n wwid "^36000"\n}\nblacklist_exceptions {\n'
                                        ' device {\n  vendor LIO\n }\n}\n'))
    assert "(config file rule) ^36000" in text
    assert "(default rule) !^(sd[a-z]|dasd[a-z]|nvme[0-9])" in text
    assert "(config file rule) vendor=LIO product=*" in text
    assert text.count("- blacklist:") == 5
