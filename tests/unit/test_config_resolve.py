"""Keywords, values, merging of conf.d, precedence of attribute resolution, warnings and errors."""

import subprocess
import sys

import pytest

from pymultipathd.config import Config, ConfigError, load_config, parse_files, parse_text
from pymultipathd.config import keywords as kwtable
from pymultipathd.config.model import BlacklistSpec, DeviceMatch


def defaults(body: str, name: str = "t.conf") -> Config:
    return parse_text("defaults {\n" + body + "\n}\n", name)


# ------------------------------------------------------------------------------------------- built-ins


@pytest.mark.parametrize(
    "keyword, value",
    [
        ("find_multipaths", "strict"),
        ("find_multipaths_timeout", -10),
        ("force_wwids", False),
        ("user_friendly_names", False),
        ("alias_prefix", "mpath"),
        ("polling_interval", 5),
        ("max_polling_interval", 20),
        ("path_grouping_policy", "failover"),
        ("path_selector", "service-time 0"),
        ("path_checker", "tur"),
        ("prio", "const"),
        ("prio_args", None),
        ("no_path_retry", "fail"),
        ("failback", "manual"),
        ("flush_on_last_del", "unused"),
        ("uid_attribute", "ID_SERIAL"),
        ("uid_attrs", None),
        ("features", "0"),
        ("hardware_handler", "0"),
        ("rr_weight", "uniform"),
        ("rr_min_io_rq", 1),
        ("queue_without_daemon", False),
        ("retain_attached_hw_handler", True),
        ("detect_prio", True),
        ("detect_checker", True),
        ("deferred_remove", False),
        ("dev_loss_tmo", None),
        ("fast_io_fail_tmo", 5),
        ("allow_usb_devices", False),
        ("verbosity", 2),
        ("skip_kpartx", False),
        ("partition_delimiter", None),
        ("max_fds", "max"),
        ("checker_timeout", None),
        ("reservation_key", None),
    ],
)
def test_builtin_defaults(keyword, value):
    assert Config().resolve(keyword) == value


def test_file_locations_default_to_the_environment(monkeypatch):
    monkeypatch.setenv("PYMULTIPATH_WWIDS", "/x/wwids")
    monkeypatch.setenv("PYMULTIPATH_BINDINGS", "/x/bindings")
    cfg = Config()
    assert cfg.resolve("wwids_file") == "/x/wwids"
    assert cfg.resolve("bindings_file") == "/x/bindings"
    assert cfg.resolve("prkeys_file") == "/x/prkeys"


def test_max_polling_interval_follows_polling_interval():
    assert defaults("polling_interval 7").resolve("max_polling_interval") == 28
    assert defaults("polling_interval 7\nmax_polling_interval 9").resolve("max_polling_interval") == 9


# ------------------------------------------------------------------------------------------------ values


@pytest.mark.parametrize(
    "raw, mode",
    [
        ("strict", "strict"),
        ("off", "off"),
        ("no", "off"),
        ("0", "off"),
        ("on", "on"),
        ("yes", "on"),
        ("1", "on"),
        ("greedy", "greedy"),
        ("smart", "smart"),
        ("SMART", "smart"),
        ('"greedy"', "greedy"),
    ],
)
def test_find_multipaths_values(raw, mode):
    assert defaults(f"find_multipaths {raw}").find_multipaths() == mode


@pytest.mark.parametrize("raw", ["maybe", "2", "", "on off"])
def test_find_multipaths_invalid(raw):
    with pytest.raises(ConfigError) as info:
        defaults(f'find_multipaths "{raw}"')
    assert str(info.value.messages[0]).startswith("t.conf:2: find_multipaths: invalid value")


@pytest.mark.parametrize(
    "body, mode",
    [
        ("force_wwids yes", "strict"),
        ("force_wwids yes\nfind_multipaths greedy", "strict"),
        ("find_multipaths smart\nforce_wwids yes", "strict"),
        ("force_wwids no\nfind_multipaths greedy", "greedy"),
        ("force_wwids no", "strict"),
    ],
)
def test_force_wwids_means_strict(body, mode):
    assert defaults(body).find_multipaths() == mode


def test_force_wwids_overriding_a_mode_is_warned_with_its_line():
    cfg = defaults("find_multipaths greedy\nforce_wwids yes")
    assert any(w.line == 3 and w.keyword == "force_wwids" and "overrides" in w.text for w in cfg.warnings)


def test_command_line_override_beats_the_file(tmp_path, monkeypatch):
    main = write(tmp_path / "m.conf", "defaults {\n force_wwids yes\n find_multipaths smart\n}\n")
    assert load_config(main, str(tmp_path / "none")).find_multipaths() == "strict"
    assert load_config(main, str(tmp_path / "none"), find_multipaths="greedy").find_multipaths() == "greedy"
    assert load_config(main, str(tmp_path / "none"), find_multipaths="yes").find_multipaths() == "on"
    with pytest.raises(ValueError, match="sometimes"):
        load_config(main, str(tmp_path / "none"), find_multipaths="sometimes")
    # the environment is not a way to pass it: only the command line's explicit value counts
    monkeypatch.setenv("PYMULTIPATH_FIND_MULTIPATHS", "greedy")
    assert load_config(main, str(tmp_path / "none")).find_multipaths() == "strict"


@pytest.mark.parametrize(
    "raw, value, wait_known, wait_unknown",
    [(None, -10, 10, 1), ("0", 0, 10, 1), ("5", 5, 5, 5), ("-3", -3, 3, 1), ("-1", -1, 1, 1)],
)
def test_find_multipaths_timeout(raw, value, wait_known, wait_unknown):
    cfg = defaults("" if raw is None else f"find_multipaths_timeout {raw}")
    assert cfg.find_multipaths_timeout() == value
    assert cfg.find_multipaths_wait(vendor="LIO-ORG", product="TCMU device") == wait_known
    assert cfg.find_multipaths_wait(vendor="Linux", product="scsi_debug") == wait_unknown
    assert cfg.find_multipaths_wait() == wait_unknown


def test_a_user_devices_entry_makes_hardware_known():
    cfg = parse_text('devices {\n device {\n vendor "Linux"\n product "scsi_debug"\n }\n}\n')
    assert cfg.find_multipaths_wait(vendor="Linux", product="scsi_debug") == 10


@pytest.mark.parametrize(
    "keyword, raw, value",
    [
        ("no_path_retry", "fail", "fail"),
        ("no_path_retry", "0", "fail"),
        ("no_path_retry", "queue", "queue"),
        ("no_path_retry", "12", 12),
        ("failback", "manual", "manual"),
        ("failback", "immediate", "immediate"),
        ("failback", "followover", "followover"),
        ("failback", "30", 30),
        ("failback", "0", "manual"),
        ("flush_on_last_del", "unused", "unused"),
        ("flush_on_last_del", "yes", "always"),
        ("flush_on_last_del", "no", "never"),
        ("user_friendly_names", "yes", True),
        ("user_friendly_names", "no", False),
        ("user_friendly_names", "1", True),
        ("path_selector", "round-robin 0", "round-robin 0"),
        ("path_selector", "queue-length", "queue-length 0"),
        ("features", "1 queue_if_no_path", "1 queue_if_no_path"),
        ("features", "2  pg_init_retries  50", "2 pg_init_retries 50"),
        ("fast_io_fail_tmo", "off", "off"),
        ("fast_io_fail_tmo", "0", 0),
        ("dev_loss_tmo", "infinity", "infinity"),
        ("dev_loss_tmo", "600", 600),
        ("max_fds", "max", "max"),
        ("max_fds", "8192", 8192),
        ("uid_attrs", "sd:ID_SERIAL  nvme:ID_WWN", "sd:ID_SERIAL nvme:ID_WWN"),
        ("reservation_key", "0x123abc", "0x123abc"),
        ("reservation_key", "0x1:aptpl", "0x1:aptpl"),
        ("reservation_key", "file", "file"),
        ("san_path_err_threshold", "no", 0),
        ("san_path_err_threshold", "4", 4),
        ("path_checker", "directio", "directio"),
        ("path_checker", "none", "none"),
        ("partition_delimiter", "", ""),
        ("uid_attribute", "", ""),
        ("verbosity", "6", 6),
        ("find_multipaths_timeout", "-30", -30),
    ],
)
def test_values_are_typed(keyword, raw, value):
    cfg = defaults(f'{keyword} "{raw}"')
    assert cfg.defaults[keyword] == value
    kw = kwtable.lookup("defaults", keyword)
    assert kw.type.parse(kw.type.fmt(value)) == value  # what -t prints parses back


@pytest.mark.parametrize(
    "keyword, raw",
    [
        ("polling_interval", "0"),
        ("polling_interval", "five"),
        ("polling_interval", "99999999999999999999999"),
        ("verbosity", "7"),
        ("no_path_retry", "-1"),
        ("no_path_retry", "forever"),
        ("failback", "later"),
        ("user_friendly_names", "maybe"),
        ("path_grouping_policy", "round_robin"),
        ("path_selector", "fastest 0"),
        ("path_checker", "ping"),
        ("prio", "best"),
        ("features", "2 queue_if_no_path"),
        ("features", "queue_if_no_path"),
        ("uid_attrs", "ID_SERIAL"),
        ("reservation_key", "nothex"),
        ("wwids_file", "relative/path"),
        ("alias_prefix", "has space"),
        ("enable_foreign", "(unclosed"),
        ("dev_loss_tmo", "0"),
    ],
)
def test_invalid_values_are_errors_with_file_line_keyword(keyword, raw):
    with pytest.raises(ConfigError) as info:
        parse_text(f'# header\ndefaults {{\n\t{keyword} "{raw}"\n}}\n', "/etc/multipath.conf")
    (msg,) = info.value.messages
    assert (msg.file, msg.line, msg.keyword) == ("/etc/multipath.conf", 3, keyword)
    assert str(msg).startswith(f"/etc/multipath.conf:3: {keyword}: invalid value")


# ----------------------------------------------------------------------------- warnings, never fatal


@pytest.mark.parametrize(
    "text, line, keyword, fragment",
    [
        ("defaults {\n no_such_keyword 1\n}\n", 2, "no_such_keyword", "unknown keyword"),
        ("defaults {\n alias foo\n}\n", 2, "alias", "not allowed in defaults"),
        ("defaults {\n udev_dir /dev\n}\n", 2, "udev_dir", "not supported"),
        ("defaults {\n getuid_callout x\n}\n", 2, "getuid_callout", "uid_attribute"),
        ("defaults {\n multipath_dir /lib\n}\n", 2, "multipath_dir", "ignored"),
        ("defaults {\n config_dir /etc/x\n}\n", 2, "config_dir", "PYMULTIPATH_CONFDIR"),
        ('defaults {\n default_selector "round-robin 0"\n}\n', 2, "default_selector", "use path_selector"),
        ("bogus_section {\n a b\n}\n", 1, "bogus_section", "unknown section"),
        ("stray 1\n", 1, "stray", "outside of any section"),
        ("devices {\n vendor x\n}\n", 2, "vendor", "only 'device'"),
        ("devices {\n device {\n product x\n }\n}\n", 2, "device", "both vendor and product"),
        ("multipaths {\n multipath {\n alias x\n }\n}\n", 2, "multipath", "without wwid"),
        ("blacklist {\n device {\n }\n}\n", 2, "device", "without vendor or product"),
        ("blacklist {\n alias x\n}\n", 2, "alias", "not allowed"),
        ("overrides {\n protocol {\n type scsi:fcp\n no_path_retry 5\n }\n}\n", 4, "no_path_retry",
         "not allowed in overrides protocol"),
        ("defaults {\n sub {\n }\n}\n", 2, "sub", "unknown subsection"),
    ],
)
def test_warnings_name_file_and_line(text, line, keyword, fragment):
    cfg = parse_text(text, "w.conf")
    assert any(
        (w.file, w.line, w.keyword) == ("w.conf", line, keyword) and fragment in w.text for w in cfg.warnings
    ), cfg.warnings


def test_deprecated_synonyms_are_stored_under_the_new_name():
    cfg = defaults('default_selector "round-robin 0"\ncheckers_are_not_a_thing 1\nchecker directio')
    assert cfg.defaults == {"path_selector": "round-robin 0", "path_checker": "directio"}
    assert not any(w.keyword == "checker" for w in cfg.warnings)  # upstream's other name, no warning


def test_errors_from_several_files_are_collected():
    with pytest.raises(ConfigError) as info:
        parse_files([("a.conf", "defaults {\n verbosity 9\n}\n"), ("b.conf", "defaults {\n x\n}\n")])
    assert [(m.file, m.line) for m in info.value.messages] == [("a.conf", 2), ("b.conf", 2)]


# ------------------------------------------------------------------------------------- sections parsed


def test_blacklist_sections_keep_file_order():
    cfg = parse_text("""
blacklist {
    wwid "^3600a"
    devnode "^loop"
    property "ID_ATA"
    protocol "scsi:usb"
    wwid "!^36"
    device {
        vendor "ACME"
    }
    device {
        product "X$"
    }
}
blacklist_exceptions {
    devnode "sdz"
}
""")
    assert cfg.blacklist == BlacklistSpec(
        devnode=("^loop",),
        wwid=("^3600a", "!^36"),
        property=("ID_ATA",),
        protocol=("scsi:usb",),
        device=(DeviceMatch("ACME", None), DeviceMatch(None, "X$")),
    )
    assert cfg.blacklist_exceptions == BlacklistSpec(devnode=("sdz",))


@pytest.mark.parametrize("pattern", ["!(", "[z-a]", "a{2,1}", "*x", "[[:nope:]]", "a\\", "(?i)x"])
def test_invalid_blacklist_regex_is_an_error(pattern):
    with pytest.raises(ConfigError) as info:
        parse_text(f'blacklist {{\n\twwid "{pattern}"\n}}\n', "r.conf")
    assert info.value.messages[0].line == 2 and info.value.messages[0].keyword == "wwid"
    assert "invalid regular expression" in info.value.messages[0].text


def test_invalid_device_regex_is_an_error():
    with pytest.raises(ConfigError) as info:
        parse_text('devices {\n device {\n vendor "["\n product "x"\n }\n}\n', "r.conf")
    assert (info.value.messages[0].line, info.value.messages[0].keyword) == (3, "vendor")


# ------------------------------------------------------------------------------------------ precedence

PRECEDENCE = """
defaults {
    no_path_retry 1
    polling_interval 9
}
devices {
    device {
        vendor "ACME"
        product "^Box"
        no_path_retry 2
        path_grouping_policy multibus
    }
    device {
        vendor "ACME"
        product "Box 2"
        no_path_retry 3
    }
}
overrides {
    features "1 queue_if_no_path"
}
multipaths {
    multipath {
        wwid 3600a
        no_path_retry 4
        features "0"
    }
    multipath {
        wwid 3600a
        alias data
    }
}
"""


@pytest.mark.parametrize(
    "keyword, kwargs, value",
    [
        ("no_path_retry", {}, 1),
        ("no_path_retry", {"vendor": "ACME", "product": "Box 1"}, 2),
        ("no_path_retry", {"vendor": "ACME", "product": "Box 2"}, 3),  # later devices entry wins
        ("no_path_retry", {"vendor": "ACME", "product": "Box 2", "wwid": "3600a"}, 4),  # multipath wins
        ("no_path_retry", {"vendor": "ACME", "product": "Box 2", "wwid": "3600b"}, 3),  # wwid is exact
        ("no_path_retry", {"vendor": "ACME", "product": "Box 2", "wwid": "3600"}, 3),
        ("no_path_retry", {"vendor": "acme", "product": "Box 1"}, 1),  # regexes are case sensitive
        ("no_path_retry", {"vendor": "ACME", "product": "xBox 1"}, 1),  # anchored by ^ in the entry
        ("no_path_retry", {"vendor": "XACMEX", "product": "Box 1"}, 2),  # unanchored vendor
        ("path_grouping_policy", {"vendor": "ACME", "product": "Box 2"}, "multibus"),  # merged entries
        ("features", {"vendor": "ACME", "product": "Box 2"}, "1 queue_if_no_path"),  # overrides > devices
        ("features", {"wwid": "3600a"}, "0"),  # multipaths > overrides
        ("alias", {"wwid": "3600a"}, "data"),  # merged multipath entries
        ("alias", {"wwid": "3600b"}, None),
        ("polling_interval", {"wwid": "3600a"}, 9),
        ("no_path_retry", {"vendor": "LIO-ORG", "product": "TCMU device"}, 12),  # built-in hwtable
        ("prio", {"vendor": "LIO-ORG", "product": "TCMU device"}, "alua"),
        ("uid_attribute", {"vendor": "NVME", "product": "Linux"}, "ID_WWN"),
        ("path_checker", {"vendor": "DGC", "product": "VRAID"}, "emc_clariion"),
        ("checker", {"vendor": "DGC", "product": "VRAID"}, "emc_clariion"),  # synonym resolves
    ],
)
def test_precedence(keyword, kwargs, value):
    assert parse_text(PRECEDENCE).resolve(keyword, **kwargs) == value


def test_user_devices_entry_beats_builtin_hwtable():
    cfg = parse_text('devices {\n device {\n vendor "LIO-ORG"\n product ".*"\n no_path_retry queue\n }\n}\n')
    assert cfg.resolve("no_path_retry", vendor="LIO-ORG", product="x") == "queue"
    assert cfg.resolve("prio", vendor="LIO-ORG", product="x") == "alua"  # rest of the built-in entry stays


def test_revision_regex_needs_the_revision():
    cfg = parse_text('devices {\n device {\n vendor V\n product P\n revision "^2"\n no_path_retry 7\n }\n}\n')
    assert cfg.resolve("no_path_retry", vendor="V", product="P", revision="2.1") == 7
    assert cfg.resolve("no_path_retry", vendor="V", product="P", revision="1.0") == "fail"
    assert cfg.resolve("no_path_retry", vendor="V", product="P") == "fail"


def test_resolve_unknown_keyword_raises_keyerror():
    with pytest.raises(KeyError):
        Config().resolve("no_such_keyword")


@pytest.mark.parametrize(
    "uid_attrs, devnode, vendor, expected",
    [
        (None, "sda", None, "ID_SERIAL"),
        (None, "nvme0n1", "NVME", "ID_WWN"),
        ("sd:ID_WWN nvme:ID_NVME", "sdb", None, "ID_WWN"),
        ("sd:ID_WWN nvme:ID_NVME", "nvme1n1", "NVME", "ID_NVME"),
        ("sd:ID_WWN", "dasda", None, "ID_SERIAL"),
    ],
)
def test_uid_attribute_for(uid_attrs, devnode, vendor, expected):
    cfg = defaults(f'uid_attrs "{uid_attrs}"') if uid_attrs else Config()
    assert cfg.uid_attribute_for(devnode, vendor=vendor, product="x") == expected


# -------------------------------------------------------------------------------- files and conf.d


def write(path, text):
    path.write_text(text)
    return str(path)


def test_missing_main_file_and_dir_give_builtin_defaults(tmp_path):
    cfg = load_config(str(tmp_path / "none.conf"), str(tmp_path / "none.d"))
    assert cfg.files == [] and cfg.defaults == {} and cfg.find_multipaths() == "strict"


def test_conf_d_is_read_in_sorted_order_and_later_wins(tmp_path):
    main = write(
        tmp_path / "multipath.conf",
        "defaults {\n polling_interval 3\n find_multipaths on\n}\nblacklist {\n wwid main\n}\n",
    )
    confd = tmp_path / "conf.d"
    confd.mkdir()
    write(confd / "20-b.conf", "defaults {\n polling_interval 20\n}\nblacklist {\n wwid b20\n}\n")
    write(
        confd / "10-a.conf", "defaults {\n polling_interval 10\n verbosity 4\n}\nblacklist {\n wwid a10\n}\n"
    )
    write(confd / "30-ignored.txt", "defaults {\n polling_interval 30\n}\n")
    (confd / "40-dir.conf.d").mkdir()
    cfg = load_config(main, str(confd))
    assert cfg.files == [main, str(confd / "10-a.conf"), str(confd / "20-b.conf")]
    assert cfg.defaults == {"polling_interval": 20, "find_multipaths": "on", "verbosity": 4}
    assert cfg.blacklist.wwid == ("main", "a10", "b20")


def test_environment_locations_are_used(tmp_path, monkeypatch):
    main = write(tmp_path / "m.conf", "defaults {\n verbosity 5\n}\n")
    monkeypatch.setenv("PYMULTIPATH_CONF", main)
    monkeypatch.setenv("PYMULTIPATH_CONFDIR", str(tmp_path / "nothing"))
    assert load_config().defaults == {"verbosity": 5}


def test_error_in_conf_d_names_that_file(tmp_path):
    confd = tmp_path / "d"
    confd.mkdir()
    bad = write(confd / "a.conf", "defaults {\n\n polling_interval -1\n}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "missing.conf"), str(confd))
    assert str(info.value) == f"{bad}:3: polling_interval: invalid value '-1': expected an integer >= 1"


def test_unreadable_main_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path), str(tmp_path / "none"))  # a directory is not readable as a file
    assert info.value.messages[0].file == str(tmp_path)


def test_non_utf8_bytes_do_not_crash(tmp_path):
    main = tmp_path / "m.conf"
    main.write_bytes(b'devices {\n device {\n vendor "\xff\xfe"\n product "x"\n }\n}\n')
    cfg = load_config(str(main), str(tmp_path / "none"))
    assert cfg.devices[0]["vendor"] == "\udcff\udcfe"


# ----------------------------------------------------------------------- pydantic only at the edges


def test_config_core_does_not_import_pydantic():
    code = (
        "import sys, pymultipathd.config.load, pymultipathd.blacklist, pymultipathd.config.render;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_keyword_has_a_doc_and_a_section():
    for kw in kwtable.KEYWORDS:
        assert kw.doc and kw.sections, kw.name
        assert kw.synonym_of is None or kwtable.attribute(kw.synonym_of).name == kw.synonym_of


REV_ENTRY = ('devices {\n device {\n vendor V\n product P\n revision "^2"\n uid_attribute ID_REV2\n'
             ' no_path_retry 9\n }\n}\n')


def test_a_revision_entry_reaches_every_lookup_that_knows_the_devices_revision():
    cfg = parse_text(REV_ENTRY)
    assert cfg.is_known_hardware(vendor="V", product="P", revision="2.0")
    assert not cfg.is_known_hardware(vendor="V", product="P", revision="1.0")
    assert cfg.uid_attribute_for("sdb", vendor="V", product="P", revision="2.0") == "ID_REV2"
    assert cfg.uid_attribute_for("sdb", vendor="V", product="P", revision="1.0") == "ID_SERIAL"


def test_a_maps_configuration_is_resolved_with_its_paths_revision():
    from pymultipathd import mapmaker
    from pymultipathd.classify import PathFacts
    from pymultipathd.policy.state import DaemonState, MapState, PathState

    state = DaemonState()
    state.paths["sdb"] = PathState(dev="sdb", dev_t="8:16", facts=PathFacts(
        dev="sdb", dev_t="8:16", wwid="w", vendor="V", product="P", revision="2.5"))
    assert mapmaker.map_identity(state, ("sdb",), None) == ("V", "P", "2.5")
    m = MapState(name="mpatha", wwid="w")
    state.maps["mpatha"] = m
    state.set_paths(m, ["sdb"])
    assert mapmaker.map_identity(state, (), m) == ("V", "P", "2.5")
    m.vendor, m.product, m.revision = "V", "P", "1.0"
    assert mapmaker.map_identity(state, ("sdb",), m) == ("V", "P", "1.0")
    cfg = parse_text(REV_ENTRY)
    assert cfg.resolve("no_path_retry", wwid="w", vendor="V", product="P", revision="2.5") == 9
