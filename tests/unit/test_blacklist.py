"""Blacklist: five criteria in upstream's order, exceptions, "!" inversion, built-ins, property missing."""

import pytest

from pymultipathd.blacklist import BlacklistVerdict, check, effective_blacklist, effective_exceptions
from pymultipathd.config import Config, parse_files, parse_text

GOOD = {"ID_SERIAL": "3600a", "SCSI_IDENT_LUN_NAA_REG": "600a"}  # a well-behaved SCSI disk


def verdict(excluded, criterion=None, source=None, pattern=None):
    return BlacklistVerdict(excluded, criterion, source, pattern)


OK = verdict(False)


def bl(body: str, exceptions: str = "") -> Config:
    return parse_text(f"blacklist {{\n{body}\n}}\nblacklist_exceptions {{\n{exceptions}\n}}\n")


# ---------------------------------------------------------------------------------- built-in defaults


@pytest.mark.parametrize(
    "devnode, excluded",
    [
        ("sda", False),
        ("sdz", False),
        ("sdaa", False),
        ("dasda", False),
        ("nvme0n1", False),
        ("nvme10n2", False),
        ("loop0", True),
        ("dm-3", True),
        ("sr0", True),
        ("vda", True),
        ("md0", True),
        ("xsda", True),
        ("SDA", True),
        ("nvme", True),
        ("dasd", True),
        ("sd", True),
    ],
)
def test_builtin_devnode_blacklist(devnode, excluded):
    expected = verdict(True, "devnode", "default", "!^(sd[a-z]|dasd[a-z]|nvme[0-9])") if excluded else OK
    assert check(Config(), devnode=devnode) == expected


@pytest.mark.parametrize(
    "properties, expected",
    [
        (GOOD, OK),
        ({"ID_SERIAL": "x", "ID_WWN": "0x5000"}, OK),
        ({"ID_SERIAL": "x", "XID_WWN_Y": "1"}, OK),  # unanchored
        ({"ID_SERIAL": "x", "id_wwn": "1"}, verdict(True, "property_missing", "default", None)),  # case
        ({"ID_SERIAL": "x", "ID_VENDOR": "ATA"}, verdict(True, "property_missing", "default", None)),
        ({"ID_VENDOR": "ATA"}, OK),  # no uid_attribute property: the rule does not apply
        ({}, OK),
    ],
)
def test_builtin_property_exception_and_property_missing(properties, expected):
    assert check(Config(), devnode="sda", properties=properties) == expected


def test_properties_not_given_means_not_evaluated():
    assert check(Config(), devnode="sda") == OK


def test_property_missing_uses_the_devices_uid_attribute():
    # NVMe's built-in uid_attribute is ID_WWN: a namespace without ID_WWN is not "missing" even with ID_SERIAL
    props = {"ID_SERIAL": "x", "ID_MODEL": "m"}
    assert check(Config(), devnode="nvme0n1", vendor="NVME", product="x", properties=props) == OK
    assert (
        check(Config(), devnode="sda", vendor="ATA", product="x", properties=props).criterion
        == "property_missing"
    )


def test_empty_uid_attribute_disables_property_missing():
    cfg = parse_text('defaults {\n uid_attribute ""\n}\n')
    assert check(cfg, devnode="sda", properties={"ID_SERIAL": "x"}) == OK


def test_user_property_exception_is_added_to_the_builtin():
    cfg = bl("", 'property "^ID_ATA$"')
    assert check(cfg, devnode="sda", properties={"ID_SERIAL": "x", "ID_ATA": "1"}) == OK
    assert check(cfg, devnode="sda", properties=GOOD) == OK
    assert check(cfg, devnode="sda", properties={"ID_SERIAL": "x"}) == verdict(
        True, "property_missing", "exception", None
    )


@pytest.mark.parametrize(
    "properties, expected",
    [
        # names in sorted order; the first that matches either list decides (upstream's loop)
        (
            {"ID_SERIAL": "x", "ID_BUS": "usb", "ID_WWN": "1"},
            verdict(True, "property", "blacklist", "ID_BUS"),
        ),
        ({"ID_SERIAL": "x", "ID_BUS": "usb", "ID_AAA_WWN": "1"}, OK),
        ({"ID_SERIAL": "x", "SCSI_IDENT_X": "1"}, OK),
        ({"ID_BUS": "usb"}, verdict(True, "property", "blacklist", "ID_BUS")),
    ],
)
def test_property_blacklist(properties, expected):
    cfg = bl('property "ID_BUS"', 'property "ID_AAA_WWN"')
    assert check(cfg, devnode="sda", properties=properties) == expected


def test_property_matching_both_lists_is_an_exception():
    cfg = bl('property "WWN"', "")
    assert check(cfg, devnode="sda", properties={"ID_SERIAL": "x", "ID_WWN": "1"}) == OK


# ------------------------------------------------------------------------------------------ criteria

CASES = """
blacklist {
    devnode "^sd[b-d]"
    devnode "!^(sd|nvme|loop)"
    wwid "^3600a"
    wwid "deadbeef"
    protocol "scsi:(usb|ata)"
    device {
        vendor "ACME"
        product "Trash"
    }
    device {
        vendor "^Bad"
    }
    device {
        product "!^OK"
        vendor "Picky"
    }
}
blacklist_exceptions {
    devnode "sdc"
    wwid "^3600a0"
    protocol "ata"
    device {
        vendor "ACME"
        product "Trash Pro"
    }
}
"""


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"devnode": "sda"}, OK),
        ({"devnode": "sdb"}, verdict(True, "devnode", "blacklist", "^sd[b-d]")),
        ({"devnode": "sdc"}, OK),  # exception beats blacklist within the criterion
        ({"devnode": "sdcc"}, OK),  # exceptions are unanchored too
        ({"devnode": "sdd"}, verdict(True, "devnode", "blacklist", "^sd[b-d]")),
        ({"devnode": "xvda"}, verdict(True, "devnode", "blacklist", "!^(sd|nvme|loop)")),
        ({"devnode": "loop0"}, verdict(True, "devnode", "default", "!^(sd[a-z]|dasd[a-z]|nvme[0-9])")),
        ({"devnode": "sda", "wwid": "3600a1234"}, verdict(True, "wwid", "blacklist", "^3600a")),
        ({"devnode": "sda", "wwid": "3600a0234"}, OK),
        ({"devnode": "sda", "wwid": "36000deadbeef00"}, verdict(True, "wwid", "blacklist", "deadbeef")),
        ({"devnode": "sda", "wwid": "36000DEADBEEF00"}, OK),  # case sensitive
        (
            {"devnode": "sda", "protocol": "scsi:usb"},
            verdict(True, "protocol", "blacklist", "scsi:(usb|ata)"),
        ),
        ({"devnode": "sda", "protocol": "scsi:ata"}, OK),
        ({"devnode": "sda", "protocol": "scsi:iscsi"}, OK),
        (
            {"devnode": "sda", "vendor": "ACME", "product": "Trash 1"},
            verdict(True, "device", "blacklist", "ACME:Trash"),
        ),
        ({"devnode": "sda", "vendor": "ACME", "product": "Trash Pro"}, OK),
        ({"devnode": "sda", "vendor": "ACME", "product": "Good"}, OK),
        (
            {"devnode": "sda", "vendor": "Bad Corp", "product": "Anything"},
            verdict(True, "device", "blacklist", "^Bad:"),
        ),
        ({"devnode": "sda", "vendor": "Not Bad", "product": "Anything"}, OK),
        ({"devnode": "sda", "vendor": "Picky", "product": "OK 1"}, OK),
        (
            {"devnode": "sda", "vendor": "Picky", "product": "Other"},
            verdict(True, "device", "blacklist", "Picky:!^OK"),
        ),
        (
            {"devnode": "sda", "vendor": "DGC", "product": "LUNZ"},
            verdict(True, "device", "default", "^DGC:LUNZ"),
        ),
        ({"devnode": "sda", "vendor": "DGC", "product": "VRAID"}, OK),
        ({"devnode": "sda", "vendor": "ACME"}, OK),  # device criterion needs vendor and product
        # order: property, devnode, device, protocol, wwid -- the first exclusion is reported
        (
            {"devnode": "sdb", "wwid": "3600a1", "protocol": "scsi:usb", "vendor": "Bad", "product": "x"},
            verdict(True, "devnode", "blacklist", "^sd[b-d]"),
        ),
        (
            {"devnode": "sda", "wwid": "3600a1", "protocol": "scsi:usb", "vendor": "Bad", "product": "x"},
            verdict(True, "device", "blacklist", "^Bad:"),
        ),
        (
            {"devnode": "sda", "wwid": "3600a1", "protocol": "scsi:usb"},
            verdict(True, "protocol", "blacklist", "scsi:(usb|ata)"),
        ),
        (
            {"devnode": "sdb", "properties": {"ID_SERIAL": "x"}},
            verdict(True, "property_missing", "default", None),
        ),
    ],
)
def test_criteria_table(kwargs, expected):
    assert check(parse_text(CASES), **kwargs) == expected


def test_devnode_exception_rescues_a_builtin_blacklisted_device():
    cfg = bl("", 'devnode "^vd[a-z]"')
    assert check(cfg, devnode="vda") == OK
    assert check(cfg, devnode="loop0").criterion == "devnode"


def test_catch_all_blacklist_with_exceptions():
    cfg = bl('wwid ".*"', 'wwid "^3600a098"')
    assert check(cfg, devnode="sda", wwid="3600a0981234") == OK
    assert check(cfg, devnode="sda", wwid="35000c500") == verdict(True, "wwid", "blacklist", ".*")
    assert check(cfg, devnode="sda") == OK  # wwid unknown yet: not evaluated


def test_devices_entry_product_blacklist_is_a_user_blacklist_entry():
    cfg = parse_text(
        'devices {\n device {\n vendor "ACME"\n product ".*"\n product_blacklist "^Ctl"\n }\n}\n'
    )
    assert check(cfg, devnode="sda", vendor="ACME", product="Ctl LUN") == verdict(
        True, "device", "blacklist", "ACME:^Ctl"
    )
    assert check(cfg, devnode="sda", vendor="ACME", product="Disk") == OK


@pytest.mark.parametrize(
    "pattern, value, matches",
    [
        ("sd", "xsdx", True),  # unanchored
        ("^sd$", "sda", False),
        ("!sd", "vda", True),
        ("!sd", "sda", False),
        ("\\!sd", "!sda", True),  # escaped: a literal "!"
        ("\\!sd", "sda", False),
        ("^[[:alpha:]]+[[:digit:]]$", "sdb1", True),
        ("^[[:alpha:]]+[[:digit:]]$", "sd11", False),
        ("^[[:upper:]]", "Sda", True),
        ("^[[:upper:]]", "sda", False),
        ("^dm-[0-9]+$", "dm-12", True),
        ("a{2,}", "caab", True),
        ("a{2,}", "cab", False),
        ("(sd|vd)[a-c]", "vdb", True),
        ("[]]", "x]", True),
        ("[^]a]", "]a", False),
        ("[\\]", "a\\b", True),  # a backslash inside brackets is literal
        ("x)", "x)", True),  # an unmatched ")" is literal in glibc
        ("\\.", "a.b", True),
        ("\\.", "ab", False),
        ("a.c", "a\nc", True),  # "." matches newline in POSIX
    ],
)
def test_regex_semantics_in_wwid_entries(pattern, value, matches):
    cfg = bl(f'wwid "{pattern}"')
    excluded = check(cfg, devnode="sda", wwid=value).excluded
    assert excluded is matches


# ------------------------------------------------------------------------- main file and conf.d split


def test_entries_split_between_main_file_and_conf_d():
    cfg = parse_files(
        [
            (
                "/etc/multipath.conf",
                'blacklist {\n wwid "^36"\n}\nblacklist_exceptions {\n devnode "^vd"\n}\n',
            ),
            ("/etc/multipath/conf.d/10.conf", 'blacklist_exceptions {\n wwid "^3600a"\n}\n'),
            (
                "/etc/multipath/conf.d/20.conf",
                'blacklist {\n devnode "^vdz"\n device {\n vendor "X"\n }\n}\n',
            ),
        ]
    )
    assert check(cfg, devnode="vda") == OK  # exception from main file beats the built-in blacklist
    assert check(cfg, devnode="vdz") == OK  # ... and the conf.d blacklist entry (same criterion)
    assert check(cfg, devnode="sda", wwid="3601") == verdict(True, "wwid", "blacklist", "^36")
    assert check(cfg, devnode="sda", wwid="3600a1") == OK  # exception from conf.d beats main blacklist
    assert check(cfg, devnode="sda", vendor="X", product="y") == verdict(True, "device", "blacklist", "X:")


def test_effective_lists_include_builtins():
    cfg = bl('wwid "x"', 'wwid "y"')
    assert "!^(sd[a-z]|dasd[a-z]|nvme[0-9])" in effective_blacklist(cfg).devnode
    assert effective_blacklist(cfg).wwid == ("x",)
    assert effective_exceptions(cfg).property == ("(SCSI_IDENT_|ID_WWN)",)
    assert effective_exceptions(cfg).wwid == ("y",)


def test_device_answers_follow_the_configuration_they_were_made_from():
    """The device rules and their answers are kept on the Config: a changed blacklist or devices table
    (records are mutable; reconfigure builds a new Config) is answered by its own rules, never by the
    ones kept from before."""
    from pymultipathd.config.model import BlacklistSpec, DeviceMatch

    cfg = parse_text("")
    assert check(cfg, devnode="sda", vendor="EMC", product="LUNZ") == verdict(True, "device", "default",
                                                                               "EMC:LUNZ")
    assert check(cfg, devnode="sda", vendor="ACME", product="Ctl LUN") == OK
    cfg.blacklist = BlacklistSpec(device=(DeviceMatch("ACME", "^Ctl"),))
    assert check(cfg, devnode="sda", vendor="ACME", product="Ctl LUN") == verdict(True, "device", "blacklist",
                                                                                   "ACME:^Ctl")
    cfg.blacklist = BlacklistSpec()
    cfg.devices = [{"vendor": "ZETA", "product": ".*", "product_blacklist": "^Gate"}]
    assert check(cfg, devnode="sda", vendor="ACME", product="Ctl LUN") == OK
    assert check(cfg, devnode="sda", vendor="ZETA", product="Gateway") == verdict(True, "device", "blacklist",
                                                                                   "ZETA:^Gate")


def test_device_answers_kept_are_bounded():
    from pymultipathd import blacklist

    cfg = parse_text("")
    for i in range(blacklist.ANSWERS_MAX + 10):
        assert check(cfg, devnode="sda", vendor="ACME", product=f"model{i}") == OK
    assert len(blacklist._device_rules(cfg).answers) <= blacklist.ANSWERS_MAX


def test_property_answers_follow_the_configuration_they_were_made_from():
    """What each property name says is kept on the Config; changed property entries are answered by their
    own rules, never by the answers kept from before."""
    from pymultipathd.config.model import BlacklistSpec

    cfg = parse_text("")
    props = {"ID_SERIAL": "x", "ID_WWN": "0x1", "ID_BUS": "scsi"}
    assert check(cfg, devnode="sda", properties=props) == OK
    cfg.blacklist = BlacklistSpec(property=("^ID_BUS$",))
    assert check(cfg, devnode="sda", properties={"ID_BUS": "scsi", "ID_SERIAL": "x"}) == verdict(
        True, "property", "blacklist", "^ID_BUS$")
    cfg.blacklist_exceptions = BlacklistSpec(property=("^ID_BUS$",))
    assert check(cfg, devnode="sda", properties={"ID_BUS": "scsi"}) == OK
    cfg.blacklist_exceptions = BlacklistSpec()
    cfg.blacklist = BlacklistSpec()
    assert check(cfg, devnode="sda", properties={"ID_BUS": "scsi", "ID_SERIAL": "x"}) == verdict(
        True, "property_missing", "default", None)


def test_property_answers_kept_are_bounded():
    from pymultipathd import blacklist

    cfg = parse_text("")
    for i in range(blacklist.ANSWERS_MAX + 10):
        check(cfg, devnode="sda", properties={f"P{i}": "x", "ID_WWN": "1"})
    assert len(blacklist._kept_rules(cfg, blacklist._PropertyRules).answers) <= blacklist.ANSWERS_MAX
