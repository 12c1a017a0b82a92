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


def test_maps_no_multipaths_entry_names_share_their_hardwares_settings(monkeypatch):
    """A WWID is read only by multipaths entries: the maps of one kind of hardware that no entry names
    share one set of settings, made once, and a named map still gets its entry's."""
    from pymultipathd.policy import settings as settings_mod
    from pymultipathd.policy.settings import RetryMode, map_settings
    from pymultipathd.policy.state import MapState

    made = []
    real = settings_mod._typed
    monkeypatch.setattr(settings_mod, "_typed", lambda resolve: made.append(1) or real(resolve))
    core = Core(load.parse_text(CONF), ctl=None)
    try:
        def settings(wwid: str):
            m = MapState(name=f"mpath{wwid}", wwid=wwid, vendor="ACME", product="Box")
            return core.settings_of(m)

        plain = [settings(w) for w in ("36002", "36003", "36004")]
        assert plain[0] is plain[1] is plain[2] and len(made) == 1
        # what the policy's own calls get for a map's resolver (assembly, the table's queueing): the same
        revision = MapState(name="m", wwid="36005").revision
        assert map_settings(core.resolver("36005", "ACME", "Box", revision)) is plain[0] and len(made) == 1
        assert plain[0].no_path_retry.mode is RetryMode.QUEUE
        named = settings("36001")
        assert named.no_path_retry.mode is RetryMode.FAIL and len(made) == 2
        core.config = load.parse_text(CONF.replace("36001", "36003"))  # reconfigure names another
        assert settings("36003").no_path_retry.mode is RetryMode.FAIL
        assert settings("36001").no_path_retry.mode is RetryMode.QUEUE
    finally:
        core.runner.close()
