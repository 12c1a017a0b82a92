"""`pymultipath -C DEV` / `-U` argument handling on the host (the VM test checks real maps)."""

from __future__ import annotations

from pymultipathd import locations
from pymultipathd.cli import pymultipath, usable_cmd
from tests.unit.sysfs_tree import Tree


def test_u_needs_the_udev_events_device(capsys):
    assert pymultipath.main(["-U"], env={}) == 2
    assert "MAJOR and MINOR" in capsys.readouterr().err
    assert pymultipath.main(["-C"], env={}) == 2


def test_a_map_is_found_by_node_name_dm_n_or_major_minor(tmp_path):
    tree = Tree(tmp_path)
    tree.mpath_map("dm-3", "mpatha", "3600a", [])
    locations.install(locations.Locations.from_env(tree.env()))
    assert usable_cmd._map_name("dm-3") == "mpatha"
    assert usable_cmd._map_name("mpatha") == "mpatha"
    (tree.sys / "dev" / "block").mkdir(parents=True, exist_ok=True)
    (tree.sys / "dev" / "block" / "253:3").symlink_to(tree.sys / "block" / "dm-3")
    assert usable_cmd._map_name("253:3") == "mpatha"
    assert usable_cmd._map_name("/nonexistent/node") is None
