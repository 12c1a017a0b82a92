"""The daemon's memoized attribute lookup answers as the configuration does and follows a reconfigure."""

from pymultipathd.config import load
from pymultipathd.daemon.core import Core

CONF = """\
defaults {
	no_path_retry 4
}
devices {
	device {
		vendor "ACME"
		product "Box"
		no_path_retry queue
	}
}
multipaths {
	multipath {
		wwid 36001
		no_path_retry fail
	}
}
"""


def test_memoized_lookup_matches_the_config_and_follows_a_new_one():
    core = Core(load.parse_text(CONF), ctl=None)
    try:
        cases = [(None, None, None), ("36002", "ACME", "Box"), ("36001", "ACME", "Box"), ("36003", "X", "Y")]
        for wwid, vendor, product in cases:
            r = core.resolver(wwid, vendor, product)
            for kw in ("no_path_retry", "polling_interval", "failback", "path_grouping_policy"):
                want = core.config.resolve(kw, wwid=wwid, vendor=vendor, product=product)
                assert r(kw) == want and r(kw) == want  # the second answer comes from the memo
        assert core.resolver("36002", "ACME", "Box")("no_path_retry") == "queue"
        core.config = load.parse_text("defaults {\n\tno_path_retry 7\n}\n")  # what reconfigure does
        assert core.resolver("36002", "ACME", "Box")("no_path_retry") == 7
        assert core.resolver("36001", "ACME", "Box")("no_path_retry") == 7
    finally:
        core.runner.close()
