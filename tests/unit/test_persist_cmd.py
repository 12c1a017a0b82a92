"""pympathpersist (cli/persist_cmd.py): options, mpathpersist's output layout, and run_out's key rule.

run_out is tested with the map operations (mapops.register / release / through_one) and the daemon
(_tell_daemon) replaced by recorders, so what is checked is which operation runs with which keys, what the
daemon is told and in which order, and what lands in the prkeys file.
"""

from __future__ import annotations

import pytest

from pymultipathd.cli import persist_cmd
from pymultipathd.cli.persist_cmd import Usage
from pymultipathd.policy.state import MapState
from pymultipathd.reservation import codec, keys, mapops
from pymultipathd.reservation.codec import PrIn, PrOut, PrType
from pymultipathd.reservation.device import PrStatus, Reply
from pymultipathd.reservation.mapops import Outcome, Path

K = 0x123ABC
K2 = 0x456DEF
OTHER = 0xDEAD
WWID = "3600a098038303053453f463045727a41"

# ---- parse_args


def parse(*argv: str):
    req = persist_cmd.parse_args(list(argv))
    assert req is not None
    return req


def test_register_long_options():
    req = parse("--out", "--register", "--param-sark=0x123abc", "/dev/mapper/mpatha")
    assert (req.direction, req.out_action, req.in_action) == ("out", PrOut.REGISTER, None)
    assert (req.rk, req.sark, req.prtype, req.aptpl, req.all_tg_pt) == (0, K, PrType.NONE, False, False)
    assert req.device == "/dev/mapper/mpatha"


def test_short_options_and_flags():
    req = parse("-o", "-G", "-K", "123abc", "-S", "456DEF", "-Z", "-Y", "-v", "3", "mpatha")
    assert (req.out_action, req.rk, req.sark, req.aptpl, req.all_tg_pt, req.verbose) == (
        PrOut.REGISTER, K, K2, True, True, 3)


@pytest.mark.parametrize(
    ("argv", "action"),
    [
        (["--register-ignore", "-S", "1"], PrOut.REGISTER_AND_IGNORE),
        (["-I", "-S", "1"], PrOut.REGISTER_AND_IGNORE),
        (["--reserve", "-K", "1", "-T", "5"], PrOut.RESERVE),
        (["-R", "-K", "1", "--prout-type=5"], PrOut.RESERVE),
        (["--release", "-K", "1", "-T", "5"], PrOut.RELEASE),
        (["-L", "-K", "1", "-T", "1"], PrOut.RELEASE),
        (["--clear", "-K", "1"], PrOut.CLEAR),
        (["-C", "-K", "1"], PrOut.CLEAR),
        (["--preempt", "-K", "1", "-S", "2", "-T", "5"], PrOut.PREEMPT),
        (["-P", "-K", "1", "-S", "2", "-T", "5"], PrOut.PREEMPT),
        (["--preempt-abort", "-K", "1", "-S", "2", "-T", "5"], PrOut.PREEMPT_AND_ABORT),
        (["-A", "-K", "1", "-S", "2", "-T", "8"], PrOut.PREEMPT_AND_ABORT),
    ],
)
def test_every_out_action(argv, action):
    req = parse("--out", *argv, "mpatha")
    assert req.out_action is action and req.direction == "out"


@pytest.mark.parametrize(
    ("opt", "action"),
    [("-k", PrIn.READ_KEYS), ("--read-keys", PrIn.READ_KEYS), ("-r", PrIn.READ_RESERVATION),
     ("--read-reservation", PrIn.READ_RESERVATION), ("-c", PrIn.REPORT_CAPABILITIES),
     ("--report-capabilities", PrIn.REPORT_CAPABILITIES), ("-s", PrIn.READ_FULL_STATUS),
     ("--read-full-status", PrIn.READ_FULL_STATUS)],
)
def test_every_in_action(opt, action):
    req = parse("--in", opt, "mpatha")
    assert (req.direction, req.in_action, req.out_action) == ("in", action, None)
    assert req.alloc_len == 8192 and not req.hex


def test_in_options():
    req = parse("-i", "-s", "-H", "-l", "0x200", "-d", "/dev/dm-3")
    assert (req.hex, req.alloc_len, req.device) == (True, 0x200, "/dev/dm-3")
    assert parse("-i", "-k", "--alloc-length=65535", "x").alloc_len == 65535


def test_direction_is_inferred_from_the_action():
    assert parse("-k", "mpatha").direction == "in"
    assert parse("-G", "-S", "1", "mpatha").direction == "out"


@pytest.mark.parametrize(("text", "prtype"), [("1", 1), ("3", 3), ("5", 5), ("6", 6), ("7", 7), ("8", 8),
                                              ("0x5", 5)])
def test_prout_type(text, prtype):
    assert parse("-o", "-R", "-K", "1", "-T", text, "mpatha").prtype == prtype


@pytest.mark.parametrize("argv", [["-h"], ["--help"], ["-i", "-k", "--help"], ["-h", "-i", "-k", "-r"]])
def test_help_returns_none(argv):
    assert persist_cmd.parse_args(argv) is None


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["mpatha"],                                          # no service action
        ["-i", "-k"],                                        # no device
        ["-i", "-k", "a", "b"],                              # two devices
        ["-i", "-k", "-d", "a", "b"],
        ["-i", "-k", "-r", "a"],                             # two service actions
        ["-o", "-G", "-R", "-T", "5", "a"],
        ["-i", "-o", "-k", "a"],                             # both directions
        ["--in", "--register", "-S", "1", "a"],              # an out action with --in
        ["--out", "--read-keys", "a"],
        ["-o", "-R", "-K", "1", "a"],                        # reserve, release, preempt need a type
        ["-o", "-L", "-K", "1", "a"],
        ["-o", "-P", "-K", "1", "-S", "2", "a"],
        ["-o", "-A", "-K", "1", "-S", "2", "-T", "0", "a"],
        ["-o", "-R", "-K", "1", "-T", "2", "a"],             # obsolete type
        ["-o", "-R", "-K", "1", "-T", "9", "a"],
        ["-o", "-R", "-K", "1", "-T", "we", "a"],
        ["-o", "-G", "-S", "0x12345678901234567", "a"],      # 17 hex digits
        ["-o", "-G", "--param-sark=zz", "a"],
        ["-o", "-G", "-K", "0x1:aptpl", "a"],
        ["-i", "-k", "-l", "0", "a"],
        ["-i", "-k", "-l", "65536", "a"],
        ["-i", "-k", "-l", "lots", "a"],
        ["-i", "-k", "-v", "high", "a"],
        ["-o", "-G", "-X", "iqn.x:y", "a"],                  # TransportIDs are not supported
        ["-f", "batch"],
        ["--bogus", "a"],
        ["-i", "-k", "-l"],                                  # option without its argument
    ],
)
def test_usage_errors(argv):
    with pytest.raises(Usage):
        persist_cmd.parse_args(argv)


def test_main_usage_error_exits_1(capsys):
    assert persist_cmd.main(["--in"]) == 1
    err = capsys.readouterr().err
    assert "pympathpersist --help" in err


def test_main_help_exits_0(capsys):
    assert persist_cmd.main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: pympathpersist")


# ---- mpathpersist's output


def test_format_keys_none():
    assert persist_cmd.format_keys(codec.Keys(0, ())) == (
        "  PR generation=0x0, \t0 registered reservation key.\n")


def test_format_keys_one():
    assert persist_cmd.format_keys(codec.Keys(0x11, (K,))) == (
        "  PR generation=0x11, \t1 registered reservation key follows:\n    0x123abc\n")


def test_format_keys_several_from_reply_bytes():
    reply = bytes([0x00, 0x00, 0x01, 0xAF, 0x00, 0x00, 0x00, 0x18,
                   0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x3A, 0xBC,
                   0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x3A, 0xBC,
                   0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
    assert persist_cmd.format_in(PrIn.READ_KEYS, reply) == (
        "  PR generation=0x1af, \t3 registered reservation keys follow:\n"
        "    0x123abc\n"
        "    0x123abc\n"
        "    0xffffffffffffffff\n")


def test_format_reservation_none():
    reply = bytes([0, 0, 0, 0x07, 0, 0, 0, 0])
    assert persist_cmd.format_in(PrIn.READ_RESERVATION, reply) == (
        "  PR generation=0x7, there is NO reservation held \n")


def test_format_reservation_held_from_reply_bytes():
    reply = bytes([0x00, 0x00, 0x00, 0x2A, 0x00, 0x00, 0x00, 0x10,
                   0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x3A, 0xBC,
                   0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00])
    assert persist_cmd.format_in(PrIn.READ_RESERVATION, reply) == (
        "  PR generation=0x2a, Reservation follows:\n"
        "   Key = 0x123abc\n"
        "  scope = LU_SCOPE, type = Write Exclusive, registrants only\n")


@pytest.mark.parametrize(
    ("byte21", "tail"),
    [
        (0x01, "  scope = LU_SCOPE, type = Write Exclusive\n"),
        (0x03, "  scope = LU_SCOPE, type = Exclusive Access\n"),
        (0x06, "  scope = LU_SCOPE, type = Exclusive Access, registrants only\n"),
        (0x07, "  scope = LU_SCOPE, type = Write Exclusive, all registrants\n"),
        (0x08, "  scope = LU_SCOPE, type = Exclusive Access, all registrants\n"),
        (0x15, "  scope = 1, type = Write Exclusive, registrants only\n"),
    ],
)
def test_format_reservation_types(byte21, tail):
    reply = bytes([0, 0, 0, 1, 0, 0, 0, 0x10]) + bytes([0] * 7 + [1]) + bytes(5) + bytes([byte21, 0, 0])
    assert persist_cmd.format_in(PrIn.READ_RESERVATION, reply).endswith("   Key = 0x1\n" + tail)


def test_format_reservation_obsolete_type_keeps_its_number():
    reply = bytes([0, 0, 0, 1, 0, 0, 0, 0x10]) + bytes([0] * 7 + [1]) + bytes(5) + bytes([0x02, 0, 0])
    assert persist_cmd.format_in(PrIn.READ_RESERVATION, reply).endswith(
        "  scope = LU_SCOPE, type = obsolete [2]\n")


def test_format_reservation_malformed_raises_codec_error():
    with pytest.raises(codec.CodecError):
        persist_cmd.format_in(PrIn.READ_RESERVATION, bytes([0, 0, 0, 1, 0, 0, 0, 0x10]) + bytes(4))


CAP_HEAD = [
    "Report capabilities response:",
    "  Compatible Reservation Handling(CRH): {crh}",
    "  Specify Initiator Ports Capable(SIP_C): {sip}",
    "  All Target Ports Capable(ATP_C): {atp}",
    "  Persist Through Power Loss Capable(PTPL_C): {ptpl}",
    "  Type Mask Valid(TMV): {tmv}",
    "  Allow Commands: {allow}",
    "  Persist Through Power Loss Active(PTPL_A): {ptpla}",
]


def test_format_capabilities_without_type_mask():
    out = persist_cmd.format_in(PrIn.REPORT_CAPABILITIES, bytes([0x00, 0x08, 0x0C, 0x01, 0xEA, 0x01, 0, 0]))
    assert out == "\n".join(CAP_HEAD).format(crh=0, sip=1, atp=1, ptpl=0, tmv=0, allow=0, ptpla=1) + "\n"


def test_format_capabilities_with_type_mask():
    # supported: WR_EX_AR, WR_EX_RO, WR_EX (byte 4: 0xA2); not EX_AC_RO, EX_AC, EX_AC_AR
    out = persist_cmd.format_in(PrIn.REPORT_CAPABILITIES, bytes([0x00, 0x08, 0x11, 0xB0, 0xA2, 0x00, 0, 0]))
    lines = out.split("\n")
    assert lines[:8] == "\n".join(CAP_HEAD).format(
        crh=1, sip=0, atp=0, ptpl=1, tmv=1, allow=1, ptpla=0).split("\n")
    assert lines[8] == "    Support indicated in Type mask:"
    shown = dict(line.strip().rsplit(": ", 1) for line in lines[9:15])
    assert list(shown) == ["Write Exclusive, all registrants", "Exclusive Access, registrants only",
                           "Write Exclusive, registrants only", "Exclusive Access", "Write Exclusive",
                           "Exclusive Access, all registrants"]
    assert {name for name, v in shown.items() if v == "1"} == {
        "Write Exclusive, all registrants", "Write Exclusive, registrants only", "Write Exclusive"}
    assert set(shown.values()) == {"0", "1"}
    assert lines[15:] == [""]


def test_format_capabilities_ex_ac_ar_is_in_byte_5():
    out = persist_cmd.format_in(PrIn.REPORT_CAPABILITIES, bytes([0x00, 0x08, 0x00, 0x80, 0x00, 0x01, 0, 0]))
    shown = dict(line.strip().rsplit(": ", 1) for line in out.split("\n")[9:15])
    assert {name for name, v in shown.items() if int(v)} == {"Exclusive Access, all registrants"}


ISCSI_PORT = b"iqn.1994-05.com.redhat:host1,i,0x23d000000001"   # 45 characters
ISCSI_NAME = b"iqn.2001-04.com.ex:h"                              # 20 characters


def test_format_full_status():
    reply = (bytes([0x00, 0x00, 0x00, 0x33, 0x00, 0x00, 0x00, 0x80])    # 128 = 24+52 + 24+28
             # holder, through relative target port 2, iSCSI port identifier (format 01b)
             + bytes([0, 0, 0, 0, 0, 0x12, 0x3A, 0xBC]) + bytes(4) + bytes([0x01, 0x05]) + bytes(4)
             + bytes([0x00, 0x02]) + bytes([0, 0, 0, 0x34])
             + bytes([0x45, 0x00, 0x00, 0x30]) + ISCSI_PORT + bytes(3)
             # registered with ALL_TG_PT, not the holder, iSCSI name (format 00b)
             + bytes([0xDE, 0xAD, 0xBE, 0xEF, 0, 0, 0, 0x01]) + bytes(4) + bytes([0x02, 0x00]) + bytes(4)
             + bytes([0x00, 0x00]) + bytes([0, 0, 0, 0x1C])
             + bytes([0x05, 0x00, 0x00, 0x18]) + ISCSI_NAME + bytes(4))
    assert persist_cmd.format_in(PrIn.READ_FULL_STATUS, reply) == (
        "  PR generation=0x33 \n"
        "   Key = 0x123abc\n"
        "      All target ports bit clear\n"
        "      Relative port address: 0x2\n"
        "      << Reservation holder >>\n"
        "      scope: LU_SCOPE,  type: Write Exclusive, registrants only\n"
        "   iSCSI world wide unique port id: iqn.1994-05.com.redhat:host1,i,0x23d000000001\n"
        "   Key = 0xdeadbeef00000001\n"
        "      All target ports bit set\n"
        "      not reservation holder\n"
        "   iSCSI name: iqn.2001-04.com.ex:h\n")


def test_format_full_status_empty():
    assert persist_cmd.format_in(PrIn.READ_FULL_STATUS, bytes([0, 0, 0, 4, 0, 0, 0, 0])) == (
        "  PR generation=0x4 \n")


def test_hex_dump():
    assert persist_cmd.hex_dump(bytes(range(18))) == (
        " 00     00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f\n"
        " 10     10 11\n")


# ---- run_out


class World:
    """The daemon and the map operations, recorded in one event list."""

    def __init__(self, monkeypatch, tmp_path, reservation_key: object = None, *, all_tg_pt: bool = False,
                 daemon: bool | str = True) -> None:
        self.events: list[tuple] = []
        self.outcome = Outcome(PrStatus.SUCCESS)
        self.daemon = daemon          # True: answers "ok"; False: not running; a string: that answer
        self.prkeys_file = str(tmp_path / "prkeys")
        self.settings = {"reservation_key": reservation_key, "prkeys_file": self.prkeys_file,
                         "all_tg_pt": all_tg_pt}
        self.map = MapState(name="mpatha", wwid=WWID)
        self.paths = [Path("sda", "/dev/sda", True, 1, 30.0), Path("sdb", "/dev/sdb", False, 2, 30.0)]
        monkeypatch.setattr(persist_cmd, "_tell_daemon", self._tell)
        monkeypatch.setattr(mapops, "register", self._register)
        monkeypatch.setattr(mapops, "release", self._release)
        monkeypatch.setattr(mapops, "through_one", self._through_one)

    def _tell(self, command: str) -> str | None:
        self.events.append(("daemon", command))
        if self.daemon is True:
            return "ok"
        return None if self.daemon is False else str(self.daemon)

    def _register(self, paths, action, key, sa_key, *, aptpl, all_tg_pt, parallel):
        assert paths is self.paths and callable(parallel)
        self.events.append(("register", action, key, sa_key, aptpl, all_tg_pt))
        return self.outcome

    def _release(self, paths, prtype, key, *, parallel):
        assert paths is self.paths and callable(parallel)
        self.events.append(("release", prtype, key))
        return self.outcome

    def _through_one(self, paths, action, prtype, key, sa_key, *, aptpl=False):
        assert paths is self.paths
        self.events.append(("through_one", action, prtype, key, sa_key, aptpl))
        return self.outcome

    def run(self, *argv: str) -> int:
        req = parse(*argv, "mpatha")
        return persist_cmd.run_out(req, self.map, self.paths, self.settings.__getitem__)

    def ops(self) -> list[tuple]:
        return [e for e in self.events if e[0] != "daemon"]

    def told(self) -> list[str]:
        return [e[1] for e in self.events if e[0] == "daemon"]

    def write_prkeys(self, *lines: str) -> None:
        with open(self.prkeys_file, "w") as f:
            f.write("".join(line + "\n" for line in lines))


@pytest.fixture
def world(monkeypatch, tmp_path):
    def make(reservation_key: object = None, **kw) -> World:
        return World(monkeypatch, tmp_path, reservation_key, **kw)
    return make


def test_register_with_the_configured_key(world):
    w = world("0x123abc")
    assert w.run("-o", "-G", "-S", "0x123abc") == 0
    assert w.events == [("register", PrOut.REGISTER, 0, K, False, False),
                        ("daemon", "setprstatus map mpatha")]


def test_register_of_another_key_is_refused_and_nothing_is_sent(world, capsys):
    w = world("0x123abc")
    assert w.run("-o", "-G", "-S", "0x456def") == PrStatus.SYNTAX_ERROR
    assert w.events == []
    err = capsys.readouterr().err
    assert "configured reservation key doesn't match" in err and "0x123abc" in err


def test_unregister_with_the_configured_key(world):
    w = world("0x123abc")
    assert w.run("-o", "-G", "-K", "0x123abc", "-S", "0") == 0
    assert w.events == [("register", PrOut.REGISTER, K, 0, False, False),
                        ("daemon", "unsetprstatus map mpatha")]


def test_unregister_of_another_key_is_refused(world):
    w = world("0x123abc")
    assert w.run("-o", "-G", "-K", "0x456def", "-S", "0") == 1
    assert w.events == []


def test_register_and_ignore_with_sark_0_needs_no_matching_key(world):
    w = world("0x123abc")
    assert w.run("-o", "-I", "-K", "0x456def", "-S", "0") == 0
    assert w.ops() == [("register", PrOut.REGISTER_AND_IGNORE, K2, 0, False, False)]
    assert w.told() == ["unsetprstatus map mpatha"]


def test_register_and_ignore_of_another_key_is_refused(world):
    w = world("0x123abc")
    assert w.run("-o", "-I", "-S", "0x456def") == 1
    assert w.events == []


def test_key_match_is_on_the_value_not_the_text(world):
    w = world("0x0000000000123ABC")
    assert w.run("-o", "-G", "-S", "123abc") == 0


@pytest.mark.parametrize(
    ("argv", "op"),
    [
        (["-R", "-K", "0x123abc", "-T", "5"], ("through_one", PrOut.RESERVE, PrType(5), K, 0, False)),
        (["-C", "-K", "0x123abc"], ("through_one", PrOut.CLEAR, PrType.NONE, K, 0, False)),
        (["-P", "-K", "0x123abc", "-S", "0xdead", "-T", "5"],
         ("through_one", PrOut.PREEMPT, PrType(5), K, OTHER, False)),
        (["-A", "-K", "0x123abc", "-S", "0xdead", "-T", "6"],
         ("through_one", PrOut.PREEMPT_AND_ABORT, PrType(6), K, OTHER, False)),
        (["-L", "-K", "0x123abc", "-T", "5"], ("release", PrType(5), K)),
    ],
)
def test_reservation_actions_with_the_configured_key(world, argv, op):
    w = world("0x123abc")
    assert w.run("-o", *argv) == 0
    assert w.ops() == [op]


@pytest.mark.parametrize(
    "argv",
    [
        ["-R", "-K", "0xdead", "-T", "5"],
        ["-L", "-K", "0xdead", "-T", "5"],
        ["-C", "-K", "0xdead"],
        ["-P", "-K", "0xdead", "-S", "0x456def", "-T", "5"],
    ],
)
def test_reservation_actions_with_another_key_are_refused(world, argv):
    w = world("0x123abc")
    assert w.run("-o", *argv) == 1
    assert w.events == []


def test_clear_tells_the_daemon(world):
    w = world("0x123abc")
    assert w.run("-o", "-C", "-K", "0x123abc") == 0
    assert w.told() == ["unsetprstatus map mpatha"]


def test_reserve_tells_the_daemon_nothing_about_registration(world):
    w = world("0x123abc")
    assert w.run("-o", "-R", "-K", "0x123abc", "-T", "5") == 0
    assert not any("prstatus" in c or "prkey" in c for c in w.told())


def test_all_tg_pt_from_the_configuration_or_the_option(world):
    w = world("0x123abc", all_tg_pt=True)
    w.run("-o", "-G", "-S", "0x123abc")
    w2 = world("0x123abc")
    w2.run("-o", "-G", "-S", "0x123abc", "-Y")
    assert w.ops()[0][5] is True and w2.ops()[0][5] is True


def test_aptpl_from_the_configured_key_or_the_option(world):
    w = world("0x123abc:aptpl")
    w.run("-o", "-G", "-S", "0x123abc")
    w2 = world("0x123abc")
    w2.run("-o", "-G", "-S", "0x123abc", "-Z")
    assert w.ops()[0][4] is True and w2.ops()[0][4] is True


def test_failure_is_the_exit_status_and_the_daemon_is_not_told(world, capsys):
    w = world("0x123abc")
    w.outcome = Outcome(PrStatus.RESERVATION_CONFLICT,
                        per_path=(("sda", Reply(PrStatus.RESERVATION_CONFLICT)),))
    assert w.run("-o", "-G", "-S", "0x123abc") == PrStatus.RESERVATION_CONFLICT
    assert w.told() == []
    out = capsys.readouterr()
    assert out.out == "persistent reserve out: scsi status: Reservation Conflict\nPR out: command failed\n"
    assert "register failed: reservation conflict" in out.err


def test_daemon_not_running_after_a_registration_is_only_a_warning(world, capsys):
    w = world("0x123abc", daemon=False)
    assert w.run("-o", "-G", "-S", "0x123abc") == 0
    assert "pymultipathd is not running" in capsys.readouterr().err


def test_no_configured_key_refuses_a_key_change(world, capsys):
    w = world(None)
    assert w.run("-o", "-G", "-K", "0x123abc", "-S", "0x456def") == 1
    assert w.events == []
    assert "no reservation_key is configured" in capsys.readouterr().err


# -- reservation_key file: the key goes to the prkeys file (through the daemon, or directly without it)


def test_file_source_register_sets_the_prkey_first(world):
    w = world("file")
    assert w.run("-o", "-G", "-S", "0x123abc") == 0
    assert w.events == [("daemon", "setprkey map mpatha key 0x123abc"),
                        ("register", PrOut.REGISTER, 0, K, False, False),
                        ("daemon", "setprstatus map mpatha")]


def test_file_source_register_aptpl_key(world):
    w = world("file")
    assert w.run("-o", "-G", "-S", "0x123abc", "-Z") == 0
    assert w.told()[0] == "setprkey map mpatha key 0x123abc:aptpl"
    assert w.ops() == [("register", PrOut.REGISTER, 0, K, True, False)]


def test_file_source_key_change_from_the_files_key(world):
    w = world("file")
    w.write_prkeys(f"0x0000000000123abc {WWID}")
    assert w.run("-o", "-G", "-K", "0x123abc", "-S", "0x456def") == 0
    assert w.told()[0] == "setprkey map mpatha key 0x456def"
    assert w.ops() == [("register", PrOut.REGISTER, K, K2, False, False)]


def test_file_source_key_change_from_another_key_is_refused(world):
    w = world("file")
    w.write_prkeys(f"0x0000000000123abc {WWID}")
    assert w.run("-o", "-G", "-K", "0xdead", "-S", "0x456def") == 1
    assert w.events == []
    assert keys.read_prkeys(w.prkeys_file) == {WWID: keys.Key(K)}


def test_file_source_register_and_ignore_always_takes_the_new_key(world):
    w = world("file")
    w.write_prkeys(f"0x0000000000123abc {WWID}")
    assert w.run("-o", "-I", "-S", "0x456def") == 0
    assert w.told()[0] == "setprkey map mpatha key 0x456def"


def test_file_source_daemon_not_running_writes_the_file_itself(world):
    w = world("file", daemon=False)
    w.write_prkeys(*[line for line in keys.PRKEYS_HEADER.splitlines()], f"0x0000000000000001 {'3' * 33}")
    assert w.run("-o", "-G", "-S", "0x123abc", "-Z") == 0
    assert keys.read_prkeys(w.prkeys_file) == {WWID: keys.Key(K, aptpl=True), "3" * 33: keys.Key(1)}
    assert w.ops() == [("register", PrOut.REGISTER, 0, K, True, False)]


def test_file_source_daemon_refusing_setprkey_stops_everything(world, capsys):
    w = world("file", daemon="fail\nno such map")
    assert w.run("-o", "-G", "-S", "0x123abc") == PrStatus.DMMP_ERROR
    assert w.ops() == []
    assert "refused setprkey" in capsys.readouterr().err


def test_file_source_prkeys_file_not_writable(world, tmp_path):
    w = world("file", daemon=False)
    (tmp_path / "blocker").write_text("a file where a directory should be\n")
    w.settings["prkeys_file"] = str(tmp_path / "blocker" / "prkeys")
    assert w.run("-o", "-G", "-S", "0x123abc") == PrStatus.FILE_ERROR
    assert w.ops() == []


def test_file_source_unregister_unsets_status_and_key(world):
    w = world("file")
    w.write_prkeys(f"0x0000000000123abc {WWID}")
    assert w.run("-o", "-G", "-K", "0x123abc", "-S", "0") == 0
    assert w.told() == ["unsetprstatus map mpatha", "unsetprkey map mpatha"]


def test_file_source_clear_unsets_status_and_key(world):
    w = world("file")
    w.write_prkeys(f"0x0000000000123abc {WWID}")
    assert w.run("-o", "-C", "-K", "0x123abc") == 0
    assert w.told() == ["unsetprstatus map mpatha", "unsetprkey map mpatha"]


def test_file_source_unregister_without_daemon_removes_the_key_from_the_file(world):
    w = world("file", daemon=False)
    w.write_prkeys(f"0x0000000000123abc {WWID}")
    assert w.run("-o", "-G", "-K", "0x123abc", "-S", "0") == 0
    assert keys.read_prkeys(w.prkeys_file) == {}
    assert w.run("-o", "-G", "-S", "0x456def") == 0
