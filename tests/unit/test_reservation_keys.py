"""Reservation keys and the prkeys file (pymultipathd.reservation.keys)."""

from __future__ import annotations

import os
import stat

import pytest

from pymultipathd import store
from pymultipathd.reservation import keys
from pymultipathd.reservation.keys import BadKey, Key, MapKey, Source

HEADER_LINES = [
    "# Multipath persistent reservation keys, Version : 1.0",
    "# NOTE: this file is automatically maintained by the multipathd program.",
    "# You should not need to edit this file in normal circumstances.",
    "#",
    "# Format:",
    "# prkey wwid",
    "#",
]
WWID_A = "3600a098038303053453f463045727a41"
WWID_B = "36001405a2b3c4d5e6f708192a3b4c5d6"


# ---- parse_key: `reservation_key`, `setprkey`


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("0x123abc", Key(0x123ABC)),
        ("0X123ABC", Key(0x123ABC)),
        ("123abc", Key(0x123ABC)),          # digits are hex even without 0x
        ("10", Key(0x10)),                  # never decimal
        ("0x1", Key(1)),
        ("0xffffffffffffffff", Key((1 << 64) - 1)),
        ("ffffffffffffffff", Key((1 << 64) - 1)),
        ("0123456789abcdef0", Key(0x123456789ABCDEF0)),  # a leading 0 then 16 digits, as upstream reads it
        ("  0x42  ", Key(0x42)),
        ("0x123abc:aptpl", Key(0x123ABC, aptpl=True)),
        ("abc:aptpl", Key(0xABC, aptpl=True)),
    ],
)
def test_parse_key_accepts(text, key):
    assert keys.parse_key(text) == key


@pytest.mark.parametrize(
    "text",
    [
        "0", "0x0", "00", "0x0000000000000000", "0:aptpl",       # zero is no key
        "0x12345678901234567",                                  # 17 hex digits
        "12345678901234567",
        "0x", "", "   ", "0xg1", "0x-1", "-1", "1.5", "0x 12",
        "0x12:APTPL", "0x12:aptpl:aptpl", "0x12:ptpl",         # the only suffix is ':aptpl'
    ],
)
def test_parse_key_refuses(text):
    with pytest.raises(BadKey):
        keys.parse_key(text)


def test_key_text_round_trips():
    assert str(Key(0x123ABC)) == "0x123abc"
    assert str(Key(0x123ABC, aptpl=True)) == "0x123abc:aptpl"
    for k in (Key(1), Key((1 << 64) - 1, aptpl=True)):
        assert keys.parse_key(str(k)) == k


# ---- parse_param_key: --param-rk / --param-sark


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("0x0", 0), ("0x123abc", 0x123ABC), ("123ABC", 0x123ABC),
     ("0xffffffffffffffff", (1 << 64) - 1)],
)
def test_parse_param_key_accepts_zero_and_hex(text, value):
    assert keys.parse_param_key(text) == value


@pytest.mark.parametrize("text", ["", "0x", "0x12345678901234567", "0x12:aptpl", "zz", "-5"])
def test_parse_param_key_refuses(text):
    with pytest.raises(BadKey):
        keys.parse_param_key(text)


# ---- configured(): where a map's key comes from


def _file(path):
    """The prkeys file's keys, read when configured() asks for them."""
    return lambda: keys.read_prkeys(str(path))


def test_configured_none(tmp_path):
    f = str(tmp_path / "prkeys")
    assert keys.configured(None, WWID_A, _file(f)) == MapKey(Source.NONE, None)
    assert keys.configured("", WWID_A, _file(f)) == MapKey(Source.NONE, None)


def test_configured_from_config(tmp_path):
    f = str(tmp_path / "prkeys")
    assert keys.configured("0x123abc", WWID_A, _file(f)) == MapKey(Source.CONFIG, Key(0x123ABC))
    assert keys.configured("0x5:aptpl", WWID_A, _file(f)) == MapKey(Source.CONFIG, Key(5, aptpl=True))


def test_configured_bad_value_is_no_key(tmp_path):
    assert keys.configured("0x0", WWID_A, _file(str(tmp_path / "prkeys"))) == MapKey(Source.NONE, None)


def test_configured_from_file(tmp_path):
    f = tmp_path / "prkeys"
    f.write_text("\n".join(HEADER_LINES) + f"\n0X00000000000000ab {WWID_A}\n")
    assert keys.configured("file", WWID_A, _file(str(f))) == MapKey(Source.FILE, Key(0xAB, aptpl=True))
    assert keys.configured("file", WWID_B, _file(str(f))) == MapKey(Source.FILE, None)
    assert keys.configured("file", WWID_A, _file(str(tmp_path / "missing"))) == MapKey(Source.FILE, None)


# ---- the prkeys file


def test_render_line():
    assert keys.render_line(Key(0x123ABC), WWID_A) == f"0x0000000000123abc {WWID_A}"
    assert keys.render_line(Key(0x123ABC, aptpl=True), WWID_A) == f"0X0000000000123abc {WWID_A}"
    assert keys.render_line(Key((1 << 64) - 1), "w") == "0xffffffffffffffff w"


def test_parse_prkeys_x_marks_aptpl():
    text = "\n".join(HEADER_LINES + [f"0x0000000000000001 {WWID_A}", f"0X0000000000000002 {WWID_B}"])
    assert keys.parse_prkeys(text) == {WWID_A: Key(1), WWID_B: Key(2, aptpl=True)}


def test_parse_prkeys_skips_comments_blank_and_malformed_lines():
    text = "\n".join([
        "# 0x0000000000000009 commented",
        "   # 0x0000000000000009 indented-comment",
        "",
        "0x0000000000000000 zero-key",
        "0xzz nothex",
        "123 no-prefix",
        "0x00000000000000001 seventeen-digits",
        "0x1 two words too-many",
        "0x1",
        "0x00000000000000aa good",
    ])
    assert keys.parse_prkeys(text) == {"good": Key(0xAA)}


def test_parse_prkeys_later_line_wins():
    text = f"0x0000000000000001 {WWID_A}\n0x0000000000000002 {WWID_A}\n"
    assert keys.parse_prkeys(text) == {WWID_A: Key(2)}


def test_parse_prkeys_round_trips_rendered_lines():
    ks = {WWID_A: Key(0xABCDEF, aptpl=True), WWID_B: Key(1)}
    text = "\n".join(HEADER_LINES + [keys.render_line(k, w) for w, k in ks.items()])
    assert keys.parse_prkeys(text) == ks


def test_read_prkeys_missing_file(tmp_path):
    assert keys.read_prkeys(str(tmp_path / "nope")) == {}


def test_read_prkeys_directory_is_empty(tmp_path):
    assert keys.read_prkeys(str(tmp_path)) == {}


def _lines(path) -> list[str]:
    with open(path) as f:
        text = f.read()
    assert text.endswith("\n")
    return text.split("\n")[:-1]


def test_set_prkey_creates_the_file_with_the_header_mode_0600(tmp_path):
    path = str(tmp_path / "etc" / "prkeys")
    assert keys.set_prkey(path, WWID_A, Key(0x123ABC)) is True
    assert _lines(path) == HEADER_LINES + [f"0x0000000000123abc {WWID_A}"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert keys.read_prkeys(path) == {WWID_A: Key(0x123ABC)}


def test_set_prkey_aptpl_is_written_with_capital_x(tmp_path):
    path = str(tmp_path / "prkeys")
    keys.set_prkey(path, WWID_A, Key(0x5, aptpl=True))
    assert _lines(path)[-1] == f"0X0000000000000005 {WWID_A}"
    assert keys.read_prkeys(path) == {WWID_A: Key(5, aptpl=True)}


def test_set_prkey_replaces_only_its_wwid_and_keeps_the_rest(tmp_path):
    path = tmp_path / "prkeys"
    before = HEADER_LINES + [
        "# a comment of the admin's",
        f"0x0000000000000001 {WWID_A}",
        f"# 0x0000000000000007 {WWID_B}",
        f"0x0000000000000002 {WWID_B}",
        "garbage line kept as is",
    ]
    path.write_text("\n".join(before) + "\n")
    assert keys.set_prkey(str(path), WWID_B, Key(0x99)) is True
    assert _lines(path) == HEADER_LINES + [
        "# a comment of the admin's",
        f"0x0000000000000001 {WWID_A}",
        f"# 0x0000000000000007 {WWID_B}",
        "garbage line kept as is",
        f"0x0000000000000099 {WWID_B}",
    ]
    assert keys.read_prkeys(str(path)) == {WWID_A: Key(1), WWID_B: Key(0x99)}


def test_set_prkey_none_removes_the_line_and_keeps_header_and_others(tmp_path):
    path = tmp_path / "prkeys"
    path.write_text("\n".join(HEADER_LINES + [f"0x0000000000000001 {WWID_A}",
                                              f"0X0000000000000002 {WWID_B}"]) + "\n")
    assert keys.set_prkey(str(path), WWID_B, None) is True
    assert _lines(path) == HEADER_LINES + [f"0x0000000000000001 {WWID_A}"]
    assert keys.set_prkey(str(path), WWID_A, None) is True
    assert _lines(path) == HEADER_LINES


def test_set_prkey_removes_every_line_of_the_wwid(tmp_path):
    path = tmp_path / "prkeys"
    path.write_text(f"0x0000000000000001 {WWID_A}\n0x0000000000000002 {WWID_A}\n")
    keys.set_prkey(str(path), WWID_A, Key(3))
    assert _lines(path) == [f"0x0000000000000003 {WWID_A}"]


def test_set_prkey_without_change_does_not_write(tmp_path):
    path = str(tmp_path / "prkeys")
    assert keys.set_prkey(path, WWID_A, None) is False      # nothing to remove in no file
    assert not os.path.exists(path)
    keys.set_prkey(path, WWID_A, Key(7))
    mtime = os.stat(path).st_mtime_ns
    ino = os.stat(path).st_ino
    assert keys.set_prkey(path, WWID_A, Key(7)) is False
    assert keys.set_prkey(path, WWID_B, None) is False
    assert (os.stat(path).st_mtime_ns, os.stat(path).st_ino) == (mtime, ino)


def test_set_prkey_empty_file_gets_the_header(tmp_path):
    path = tmp_path / "prkeys"
    path.write_text("")
    keys.set_prkey(str(path), WWID_A, Key(1))
    assert _lines(path) == HEADER_LINES + [f"0x0000000000000001 {WWID_A}"]


def test_set_prkey_replaces_the_file_atomically(tmp_path):
    path = tmp_path / "prkeys"
    keys.set_prkey(str(path), WWID_A, Key(1))
    ino = os.stat(path).st_ino
    keys.set_prkey(str(path), WWID_B, Key(2))
    assert os.stat(path).st_ino != ino  # a new file renamed over the old one, not rewritten in place
    assert sorted(os.listdir(tmp_path)) == ["prkeys", "prkeys.lock"]  # no temporary left behind


def test_set_prkey_unwritable_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "prkeys"
    keys.set_prkey(str(path), WWID_A, Key(1))
    before = path.read_text()

    def fail(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(store.StoreError):
        keys.set_prkey(str(path), WWID_B, Key(2))
    monkeypatch.undo()
    assert path.read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["prkeys", "prkeys.lock"]


def test_default_prkeys_file_is_beside_the_wwids_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PYMULTIPATH_WWIDS", str(tmp_path / "etc" / "multipath" / "wwids"))
    assert keys.default_prkeys_file() == str(tmp_path / "etc" / "multipath" / "prkeys")
