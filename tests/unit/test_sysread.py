import os

from pymultipathd import sysread


def test_text_is_read_whole_and_stripped(tmp_path):
    small = tmp_path / "state"
    small.write_text("running\n")
    big = tmp_path / "mountinfo"
    body = "".join(f"{i} 1 8:{i} / /mnt/{i} rw - ext4 /dev/sd{i} rw\n" for i in range(5000))
    big.write_text(body)
    assert len(body) > 2 * sysread.CHUNK
    assert sysread.read_text(str(small)) == "running"
    assert sysread.read_text(str(big)) == body.strip()
    assert sysread.read_bytes(str(big)) == body.encode()


def test_what_cannot_be_read_is_none_or_empty(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sysread.read_text(str(empty)) == ""
    assert sysread.read_text(str(tmp_path / "gone")) is None
    assert sysread.read_text(str(tmp_path)) is None  # a directory
    assert sysread.read_attr(str(tmp_path / "gone")) == ""
    assert sysread.read_bytes(str(tmp_path / "gone")) == b""


def test_undecodable_bytes_are_replaced(tmp_path):
    f = tmp_path / "vendor"
    f.write_bytes(b"AC\xffME  \n")
    assert sysread.read_text(str(f)) == "AC\ufffdME"


def test_no_descriptor_is_left_open(tmp_path):
    f = tmp_path / "size"
    f.write_text("8192\n")
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        sysread.read_text(str(f))
        sysread.read_text(str(tmp_path))
    assert len(os.listdir("/proc/self/fd")) == before
