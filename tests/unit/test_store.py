"""wwids file, bindings file and failed-wwid markers (pymultipathd.store)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pymultipathd import store

WWIDS_HEADER_LINES = [
    "# Multipath wwids, Version : 1.0",
    "# NOTE: This file is automatically maintained by multipath and multipathd.",
    "# You should not need to edit this file in normal circumstances.",
    "#",
    "# Valid WWIDs:",
]
BINDINGS_HEADER_LINES = [
    "# Multipath bindings, Version : 1.0",
    "# NOTE: this file is automatically maintained by the multipath program.",
    "# You should not need to edit this file in normal circumstances.",
    "#",
    "# Format:",
    "# alias wwid",
    "#",
]


def lines(path) -> list[str]:
    return open(path).read().split("\n")[:-1]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    # default locations point into tmp_path, so a test that forgets `path=` cannot touch /etc
    monkeypatch.setenv("PYMULTIPATH_WWIDS", str(tmp_path / "etc" / "wwids"))
    monkeypatch.setenv("PYMULTIPATH_BINDINGS", str(tmp_path / "etc" / "bindings"))
    monkeypatch.setenv("PYMULTIPATH_RUNDIR", str(tmp_path / "run"))


@pytest.fixture
def wwids(tmp_path):
    return str(tmp_path / "etc" / "wwids")


@pytest.fixture
def bindings(tmp_path):
    return str(tmp_path / "etc" / "bindings")


# --- wwids


def test_new_wwids_file_has_upstream_header_and_mode_0600(wwids):
    assert store.add_wwid("3600a0b80001", wwids) is True
    assert lines(wwids) == [*WWIDS_HEADER_LINES, "/3600a0b80001/"]
    assert stat.S_IMODE(os.stat(wwids).st_mode) == 0o600
    assert store.read_wwids(wwids) == ["3600a0b80001"]


def test_default_path_comes_from_locations(wwids):
    store.add_wwid("w1")
    assert store.read_wwids(wwids) == ["w1"]
    assert store.read_wwids() == ["w1"]


def test_missing_file_reads_empty_and_remove_creates_nothing(wwids):
    assert store.read_wwids(wwids) == []
    assert store.remove_wwid("w1", wwids) is False
    assert not os.path.exists(wwids)


def test_add_is_idempotent_and_keeps_order(wwids):
    assert store.add_wwid("b", wwids)
    assert store.add_wwid("a", wwids)
    inode = os.stat(wwids).st_ino
    assert store.add_wwid("b", wwids) is False
    assert os.stat(wwids).st_ino == inode  # nothing rewritten
    assert store.read_wwids(wwids) == ["b", "a"]


def test_upstream_written_file_is_preserved(wwids):
    # as upstream leaves it: its header, a wwid it "removed" by overwriting the leading "/" with "#",
    # a user comment, a blank line, and no newline at the end
    text = "\n".join([*WWIDS_HEADER_LINES, "/w1/", "#w2/", "", "# mine", "/w3/"])
    os.makedirs(os.path.dirname(wwids))
    open(wwids, "w").write(text)
    os.chmod(wwids, 0o644)
    assert store.read_wwids(wwids) == ["w1", "w3"]
    assert store.add_wwid("w4", wwids)
    assert lines(wwids) == [*WWIDS_HEADER_LINES, "/w1/", "#w2/", "", "# mine", "/w3/", "/w4/"]
    assert stat.S_IMODE(os.stat(wwids).st_mode) == 0o644  # an existing file keeps its mode


def test_empty_existing_file_gets_the_header(wwids):
    os.makedirs(os.path.dirname(wwids))
    open(wwids, "w").close()
    store.add_wwid("w1", wwids)
    assert lines(wwids) == [*WWIDS_HEADER_LINES, "/w1/"]


def test_remove_drops_every_line_of_that_wwid_only(wwids):
    for w in ("w1", "w2", "w3"):
        store.add_wwid(w, wwids)
    with open(wwids, "a") as f:
        f.write("/w2/\n# keep me\n")
    assert store.remove_wwid("w2", wwids) is True
    assert lines(wwids) == [*WWIDS_HEADER_LINES, "/w1/", "/w3/", "# keep me"]
    assert store.remove_wwid("w2", wwids) is False


def test_replace_wwids_resets_to_header_and_list(wwids):
    for w in ("old1", "old2"):
        store.add_wwid(w, wwids)
    with open(wwids, "a") as f:
        f.write("# a comment\n")
    store.replace_wwids(["n1", "n2", "n1"], wwids)
    assert lines(wwids) == [*WWIDS_HEADER_LINES, "/n1/", "/n2/"]
    store.replace_wwids([], wwids)
    assert lines(wwids) == WWIDS_HEADER_LINES


def test_replace_creates_missing_file(wwids):
    store.replace_wwids(["x"], wwids)
    assert lines(wwids) == [*WWIDS_HEADER_LINES, "/x/"]
    assert stat.S_IMODE(os.stat(wwids).st_mode) == 0o600


def test_malformed_wwid_lines_are_kept_and_warned(wwids, caplog):
    os.makedirs(os.path.dirname(wwids))
    open(wwids, "w").write("# c\n/good/\nno slashes\n/unterminated\n//\n /indented/\n")
    with caplog.at_level(logging.WARNING):
        assert store.read_wwids(wwids) == ["good"]
    for n in (3, 4, 5, 6):
        assert f"{wwids}:{n}: malformed line" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        store.add_wwid("new", wwids)
        store.remove_wwid("good", wwids)
        store.replace_wwids(["r"], wwids)
    assert f"{wwids}:3: malformed line" in caplog.text
    assert lines(wwids) == [*WWIDS_HEADER_LINES, "no slashes", "/unterminated", "//", " /indented/", "/r/"]


def test_text_after_the_closing_slash_is_ignored_like_upstream(wwids, caplog):
    os.makedirs(os.path.dirname(wwids))
    open(wwids, "w").write("/w1/ trailing\n")
    with caplog.at_level(logging.WARNING):
        assert store.read_wwids(wwids) == ["w1"]
    assert f"{wwids}:1: text after /w1/ ignored" in caplog.text


@pytest.mark.parametrize("bad", ["", "a/b", "a\nb", "a\0b", ".", ".."])
def test_invalid_wwids_are_refused(bad, wwids):
    with pytest.raises(ValueError, match="invalid WWID"):
        store.add_wwid(bad, wwids)
    with pytest.raises(ValueError, match="invalid WWID"):
        store.replace_wwids(["ok", bad], wwids)
    assert not os.path.exists(wwids)


def test_wwids_with_spaces_and_non_ascii_round_trip(wwids):
    store.add_wwid("SATA_QEMU HARDDISK_QM1", wwids)
    store.add_wwid("\u00e9t\u00e9", wwids)
    assert store.read_wwids(wwids) == ["SATA_QEMU HARDDISK_QM1", "\u00e9t\u00e9"]


def test_unreadable_wwids_path_is_a_clear_error(tmp_path):
    path = tmp_path / "isdir"
    path.mkdir()
    with pytest.raises(store.StoreError, match=f"cannot read {path}"):
        store.read_wwids(str(path))


# --- failed writes


def _fsize_limited_add(path: str, queue) -> None:
    # a real kernel-enforced write failure (EFBIG), which root cannot bypass like a read-only mode
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))
    try:
        store.add_wwid("new", path)
        queue.put("no error")
    except store.StoreError as e:
        queue.put(str(e))


def test_failed_write_leaves_old_file_intact(wwids):
    store.add_wwid("old", wwids)
    before = open(wwids, "rb").read()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_fsize_limited_add, args=(wwids, queue))
    proc.start()
    message = queue.get(timeout=60)
    proc.join()
    assert message.startswith(f"cannot write {wwids}: File too large")
    assert "old file is unchanged" in message
    assert open(wwids, "rb").read() == before
    assert sorted(os.listdir(os.path.dirname(wwids))) == ["wwids", "wwids.lock"]  # no temp file left


def test_temp_file_that_cannot_be_created_leaves_old_file_intact(tmp_path):
    # a name so long that "<name>.<random>.tmp" exceeds NAME_MAX: the temp file cannot be created
    path = str(tmp_path / ("w" * 240))
    open(path, "w").write("/old/\n")
    with pytest.raises(store.StoreError, match="cannot write .*File name too long"):
        store.add_wwid("new", path)
    assert open(path).read() == "/old/\n"


def test_directory_that_cannot_be_created_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    path = str(tmp_path / "file" / "wwids")
    with pytest.raises(store.StoreError, match=f"cannot create directory {tmp_path / 'file'}"):
        store.add_wwid("new", path)


# --- aliases


@pytest.mark.parametrize(
    ("index", "alias"),
    [(1, "mpatha"), (2, "mpathb"), (26, "mpathz"), (27, "mpathaa"), (28, "mpathab"), (52, "mpathaz"),
     (53, "mpathba"), (702, "mpathzz"), (703, "mpathaaa"), (18278, "mpathzzz"), (18279, "mpathaaaa")],
)  # fmt: skip
def test_alias_numbering_is_bijective_base_26(index, alias):
    assert store.format_alias(index) == alias
    assert store.parse_alias(alias) == index


@given(st.integers(min_value=1, max_value=10**9), st.text("abcdefghijklmnopqrstuvwxyz_-", max_size=5))
def test_alias_format_and_parse_round_trip(index, prefix):
    assert store.parse_alias(store.format_alias(index, prefix), prefix) == index


@pytest.mark.parametrize("alias", ["mpath", "mpathA", "mpatha1", "mpath-a", "xpatha", "mpat", ""])
def test_parse_alias_rejects_other_names(alias):
    assert store.parse_alias(alias) is None


def test_format_alias_rejects_index_below_one():
    with pytest.raises(ValueError):
        store.format_alias(0)


def test_first_alias_creates_file_with_upstream_header(bindings):
    assert store.alias_for("wA", path=bindings) == "mpatha"
    assert lines(bindings) == [*BINDINGS_HEADER_LINES, "mpatha wA"]
    assert stat.S_IMODE(os.stat(bindings).st_mode) == 0o600
    assert store.alias_for("wB", path=bindings) == "mpathb"
    assert store.alias_for("wA", path=bindings) == "mpatha"
    assert store.read_bindings(bindings) == {"mpatha": "wA", "mpathb": "wB"}
    assert store.lookup_alias("wB", bindings) == "mpathb"
    assert store.lookup_alias("wC", bindings) is None


def test_default_bindings_path_comes_from_locations(bindings):
    assert store.alias_for("wA") == "mpatha"
    assert store.read_bindings(bindings) == {"mpatha": "wA"}


def test_existing_binding_returned_as_is_without_rewrite(bindings):
    os.makedirs(os.path.dirname(bindings))
    open(bindings, "w").write("mydisk wA\nyellowa wB\n")
    inode = os.stat(bindings).st_ino
    assert store.alias_for("wA", path=bindings) == "mydisk"
    assert store.alias_for("wB", prefix="mpath", path=bindings) == "yellowa"
    assert os.stat(bindings).st_ino == inode


def test_lowest_free_alias_fills_gaps(bindings):
    os.makedirs(os.path.dirname(bindings))
    open(bindings, "w").write("mpatha w1\nmpathc w3\nmpathz w26\nmpathaa w27\n")
    assert store.alias_for("w2", path=bindings) == "mpathb"
    assert store.alias_for("w4", path=bindings) == "mpathd"


def test_alias_after_z_is_aa(bindings):
    os.makedirs(os.path.dirname(bindings))
    open(bindings, "w").write("".join(f"{store.format_alias(i)} w{i}\n" for i in range(1, 27)))
    assert store.alias_for("new", path=bindings) == "mpathaa"


def test_other_prefix_allocates_in_its_own_space(bindings):
    store.alias_for("w1", path=bindings)
    assert store.alias_for("w2", prefix="disk", path=bindings) == "diska"
    assert store.alias_for("w3", prefix="disk", path=bindings) == "diskb"
    assert store.alias_for("w4", path=bindings) == "mpathb"


def test_reserved_aliases_are_skipped(bindings):
    assert store.alias_for("w1", path=bindings, reserved={"mpatha", "mpathb"}) == "mpathc"
    assert store.alias_for("w2", path=bindings, reserved={"mpatha"}) == "mpathb"


def test_alias_of_a_broken_line_is_never_reused(bindings, caplog):
    os.makedirs(os.path.dirname(bindings))
    open(bindings, "w").write("mpatha\nmpathb w2 extra\n")
    with caplog.at_level(logging.WARNING):
        assert store.alias_for("w9", path=bindings) == "mpathc"
    assert f"{bindings}:1: malformed line 'mpatha'" in caplog.text
    assert f"{bindings}:2: malformed line" in caplog.text
    assert lines(bindings) == ["mpatha", "mpathb w2 extra", "mpathc w9"]


def test_comments_blank_lines_and_inline_comments_preserved(bindings):
    os.makedirs(os.path.dirname(bindings))
    text = [*BINDINGS_HEADER_LINES, "", "mpatha w1  # the first one", "   ", "# mpathb reserved by hand"]
    open(bindings, "w").write("\n".join(text))  # no trailing newline either
    assert store.read_bindings(bindings) == {"mpatha": "w1"}
    assert store.alias_for("w2", path=bindings) == "mpathb"
    assert lines(bindings) == [*text, "mpathb w2"]


def test_duplicates_warned_first_wins_and_kept(bindings, caplog):
    os.makedirs(os.path.dirname(bindings))
    open(bindings, "w").write("mpatha w1\nmpatha w2\nmpathb w1\n")
    with caplog.at_level(logging.WARNING):
        assert store.read_bindings(bindings) == {"mpatha": "w1"}
    assert f"{bindings}:2: alias mpatha already bound to w1 at line 1" in caplog.text
    assert f"{bindings}:3: wwid w1 already has an alias at line 1" in caplog.text
    # w2's line is invalid, so w2 gets a fresh alias; mpathb stays claimed by line 3
    assert store.alias_for("w2", path=bindings) == "mpathc"
    assert lines(bindings) == ["mpatha w1", "mpatha w2", "mpathb w1", "mpathc w2"]


@pytest.mark.parametrize("bad", ["", "has space", "has#hash", "a/b", "tab\there"])
def test_invalid_wwid_for_binding_is_refused(bad, bindings):
    with pytest.raises(ValueError, match="invalid WWID"):
        store.alias_for(bad, path=bindings)
    assert not os.path.exists(bindings)


@pytest.mark.parametrize("prefix", ["", "a b", "a#"])
def test_invalid_prefix_is_refused(prefix, bindings):
    with pytest.raises(ValueError, match="invalid alias prefix"):
        store.alias_for("w1", prefix=prefix, path=bindings)


def test_failed_bindings_write_raises_and_keeps_file(tmp_path):
    path = str(tmp_path / ("b" * 240))
    open(path, "w").write("mpatha w1\n")
    assert store.alias_for("w1", path=path) == "mpatha"  # no write needed: works
    with pytest.raises(store.StoreError, match="cannot write"):
        store.alias_for("w2", path=path)
    assert open(path).read() == "mpatha w1\n"


# --- failed wwids


def test_failed_markers(tmp_path):
    d = tmp_path / "run" / "multipath" / "failed_wwids"
    assert store.is_failed("w1", str(d)) is False
    assert store.failed_wwids(str(d)) == frozenset()
    assert store.mark_failed("w1", str(d)) is True  # directory created as needed
    assert store.mark_failed("w1", str(d)) is False
    assert store.mark_failed("w2", str(d)) is True
    assert (d / "w1").read_bytes() == b""
    assert store.is_failed("w1", str(d)) is True
    assert store.failed_wwids(str(d)) == {"w1", "w2"}
    assert store.unmark_failed("w1", str(d)) is True
    assert store.unmark_failed("w1", str(d)) is False
    assert store.is_failed("w1", str(d)) is False
    assert store.failed_wwids(str(d)) == {"w2"}


def test_failed_markers_default_dir_from_locations(tmp_path):
    store.mark_failed("w1")
    assert (tmp_path / "run" / "failed_wwids" / "w1").exists()
    assert store.is_failed("w1")
    assert store.failed_wwids() == {"w1"}


@pytest.mark.parametrize("bad", ["", "a/b", "..", "."])
def test_failed_marker_refuses_path_like_wwids(bad, tmp_path):
    with pytest.raises(ValueError, match="invalid WWID"):
        store.mark_failed(bad, str(tmp_path))
    with pytest.raises(ValueError, match="invalid WWID"):
        store.is_failed(bad, str(tmp_path))


def test_failed_marker_in_unusable_dir_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(store.StoreError, match="cannot create directory"):
        store.mark_failed("w1", str(tmp_path / "file" / "failed_wwids"))


def test_aliases_for_a_batch_bind_in_order_in_one_write(bindings, monkeypatch):
    store.alias_for("wB", path=bindings)  # mpatha taken already
    writes = []
    real = store.write_atomic
    monkeypatch.setattr(store, "write_atomic", lambda *a, **k: (writes.append(a[0]), real(*a, **k))[1])
    got = store.aliases_for(["wC", "wB", "wD", "wC"], path=bindings, reserved={"mpathc"})
    assert got == {"wB": "mpatha", "wC": "mpathb", "wD": "mpathd"}
    assert len(writes) == 1
    assert store.read_bindings(bindings) == {"mpatha": "wB", "mpathb": "wC", "mpathd": "wD"}
    assert store.aliases_for(["wD", "wB"], path=bindings) == {"wD": "mpathd", "wB": "mpatha"}  # no write
    assert len(writes) == 1


def test_add_wwids_adds_each_new_one_once(wwids):
    assert store.add_wwids(["w1", "w2", "w1"], wwids)
    assert not store.add_wwids(["w2", "w1"], wwids)
    assert store.add_wwids(["w3", "w2"], wwids)
    assert sorted(store.read_wwids(wwids)) == ["w1", "w2", "w3"]
    assert not store.add_wwids([], wwids)
