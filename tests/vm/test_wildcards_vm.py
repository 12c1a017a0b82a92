"""The format wildcards of `show paths format` and `show maps format` print what Debian's multipathd 0.9.4
prints for the same paths and maps (issue 19): the daemons run one after the other over the same iSCSI bed
and scsi_debug LUNs, and each wildcard's column is compared path by path, map by map. The counters and
checker-driven columns (which depend on each daemon's own history) are left to tests/unit."""

from __future__ import annotations

from tests.vm import upstream
from tests.vm.pympd import Pympd

# the wildcards compared; %d keys the rows (paths), %w (maps); map names and dm-N differ by design (each
# daemon names and makes its maps anew)
PATH_WILDCARDS = "%i %D %s %c %S %z %N %n %R %r %a %G %g %P %I %L %M"
MAP_WILDCARDS = "%s %v %p %e %G %g %A %h %r %N"
SEP = "|"

# retain_attached_hw_handler (the default, written out): the kernel's attached handler is the map's (%h)
CONF = """\
defaults {
	find_multipaths greedy
	retain_attached_hw_handler yes
}
blacklist {
	devnode "^vd[a-z]"
}
"""


def _rows(out: str, width: int) -> dict[str, list[str]]:
    rows = {}
    for line in out.splitlines():
        cells = line.split(SEP)
        if len(cells) == width + 1:
            rows[cells[0]] = cells[1:]
    return rows


def _fmt(key: str, wildcards: str) -> str:
    return SEP.join([key, *wildcards.split()])


def test_wildcards_print_what_upstream_prints(iscsi_bed, scsi_debug):
    bed = iscsi_bed(luns=1, size_mb=8)
    scsi_debug(luns=1, paths=2)
    wwid = bed.paths(0)[0].wwid
    pf, mf = _fmt("%d", PATH_WILDCARDS), _fmt("%w", MAP_WILDCARDS)
    npath, nmap = len(PATH_WILDCARDS.split()), len(MAP_WILDCARDS.split())
    with upstream.UpstreamMultipathd(config=CONF) as mp:
        mp.wait_map(wwid)
        theirs_paths = _rows(mp.show("show", "paths", "raw", "format", pf), npath)
        theirs_maps = _rows(mp.show("show", "maps", "raw", "format", mf), nmap)
    with Pympd(CONF) as d:
        d.wait_map(wwid)
        ours_paths = _rows(d.cmd("show", "paths", "raw", "format", pf), npath)
        ours_maps = _rows(d.cmd("show", "maps", "raw", "format", mf), nmap)
    assert len(theirs_paths) >= 4 and set(ours_paths) == set(theirs_paths), (ours_paths, theirs_paths)
    assert len(theirs_maps) >= 2 and set(ours_maps) == set(theirs_maps), (ours_maps, theirs_maps)
    differ = []
    for label, wildcards, ours, theirs in (("path", PATH_WILDCARDS, ours_paths, theirs_paths),
                                           ("map", MAP_WILDCARDS, ours_maps, theirs_maps)):
        for key in sorted(theirs):
            for w, a, b in zip(wildcards.split(), ours[key], theirs[key], strict=True):
                if a != b:
                    differ.append(f"{label} {key} {w}: ours {a!r}, upstream {b!r}")
    assert not differ, "\n".join(differ)
