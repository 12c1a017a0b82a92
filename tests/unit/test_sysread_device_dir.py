"""sysread.device_dir resolves a device link as realpath does, in the kernel's layout and in test trees."""

import os

from pymultipathd.sysread import device_dir


def test_kernel_layout_relative_links(tmp_path):
    sys = tmp_path / "sys"
    scsi = sys / "devices" / "platform" / "host2" / "session1" / "target2:0:0" / "2:0:0:1"
    (scsi / "block" / "sdb").mkdir(parents=True)
    (sys / "block").mkdir()
    (sys / "block" / "sdb").symlink_to("../devices/platform/host2/session1/target2:0:0/2:0:0:1/block/sdb")
    (scsi / "block" / "sdb" / "device").symlink_to("../../../2:0:0:1")
    got = device_dir(str(sys / "block" / "sdb"))
    assert got == os.path.realpath(sys / "block" / "sdb" / "device") == str(scsi.resolve())


def test_real_directory_with_absolute_link(tmp_path):
    real = tmp_path / "devices" / "3:0:0:1"
    real.mkdir(parents=True)
    (tmp_path / "block" / "sdc").mkdir(parents=True)
    (tmp_path / "block" / "sdc" / "device").symlink_to(real)
    assert device_dir(str(tmp_path / "block" / "sdc")) == str(real)


def test_missing_disk_gives_a_path_without_raising(tmp_path):
    assert device_dir(str(tmp_path / "block" / "gone")).endswith("gone/device")
