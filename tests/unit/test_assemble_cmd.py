"""`pymultipath [options] [DEV ...]`, map making from the shell: upstream's option table, the plan of each map
from a fake system (the daemon's classifier and assembly), the dry-run report, what is asked of a running
daemon, and the carrying out without one (device mapper faked)."""

from __future__ import annotations

import pytest

from pymultipathd import mapmaker, store
from pymultipathd.classify import MapFacts, PathFacts, World
from pymultipathd.cli import assemble_cmd as ac
from pymultipathd.cli import pymultipath
from pymultipathd.config import parse_text
from pymultipathd.dm.errors import DMError
from pymultipathd.policy import plan as pplan
from pymultipathd.policy.state import DaemonState, MapState, PathState

GREEDY = "defaults {\n\tfind_multipaths greedy\n\tuser_friendly_names yes\n}\n"
STRICT = "defaults {\n\tfind_multipaths strict\n\tuser_friendly_names yes\n}\n"


# --- the option table --------------------------------------------------------------------------------

def _getopt_letters(spec: str) -> dict[str, bool]:
    """letter -> takes a required argument, from a getopt string (":" first: quiet errors; "::" optional)."""
    out, i = {}, 1 if spec.startswith(":") else 0
    while i < len(spec):
        letter = spec[i]
        colons = len(spec[i + 1:]) - len(spec[i + 1:].lstrip(":"))
        out[letter] = colons == 1
        i += 1 + colons
    return out


def test_every_option_of_upstream_has_a_role_and_the_same_argument():
    upstream = _getopt_letters(ac.UPSTREAM_GETOPT)
    assert set(upstream) == set(ac.OPTIONS)
    for letter, takes_arg in upstream.items():
        assert ac.OPTIONS[letter].takes_arg is takes_arg, letter
    # upstream's map-making options are taken; the operation modes are other actions
    assert {k for k, s in ac.OPTIONS.items() if s.role is ac.Role.SETTING} == set("vdrqpbBi")
    assert {k for k, s in ac.OPTIONS.items() if s.role is ac.Role.ACTION} == set("acChlfFtTuUwW")


@pytest.mark.parametrize(("argv", "expected"), [
    ([], ac.Options()),
    (["-v3"], ac.Options(verbosity=3)),
    (["-v", "0", "sdb"], ac.Options(verbosity=0, devices=("sdb",))),
    (["-dv3"], ac.Options(dry_run=True, verbosity=3)),                 # clustered, as getopt
    (["sdb", "-r", "8:32"], ac.Options(force_reload=True, devices=("sdb", "8:32"))),  # permuted
    (["-q", "-p", "multibus", "-b/tmp/b", "-B"],
     ac.Options(allow_queueing=True, policy="multibus", bindings_file="/tmp/b", bindings_read_only=True)),
    (["-i", "-d"], ac.Options(greedy=True, dry_run=True)),
    (["-d", "--", "-odd"], ac.Options(dry_run=True, devices=("-odd",))),
])
def test_options_parse_as_upstreams_getopt(argv, expected):
    assert ac.parse_options(argv) == expected


@pytest.mark.parametrize(("argv", "says"), [
    (["-v", "x"], "-v needs a number"),
    (["-v"], "-v needs an argument"),
    (["-p", "round-robin"], "not a path grouping policy"),
    (["-p"], "-p needs an argument"),
    (["-R", "3"], "-R: retrying the removal of maps in use is not supported"),
    (["-e"], "-e: foreign multipath libraries are not supported"),
    (["-D"], "two writers"),
    (["-d", "-f", "mpatha"], "-f (flush a map) is an action of its own and cannot be combined with map "
                             "making (-d"),
    (["-d", "-F"], "-F (flush every map) is an action of its own"),
    (["-r", "-ll"], "-ll (show the topology) is an action of its own"),
    (["-z"], "unknown option -z"),
    (["--dry-run"], "unknown option --dry-run"),
])
def test_nonsense_is_refused_with_a_reason(argv, says):
    with pytest.raises(ac.UsageError, match=None) as err:
        ac.parse_options(argv)
    assert says in str(err.value)


def test_the_entry_sends_no_action_to_map_making_and_keeps_other_actions_apart(monkeypatch, capsys):
    ran: list[tuple[str, list[str], dict]] = []
    monkeypatch.setattr(pymultipath, "_run", lambda module, argv, **kw: ran.append((module, argv, kw)) or 0)
    assert pymultipath.main([]) == 0
    assert pymultipath.main(["-d", "-v3", "sdb"]) == 0
    assert pymultipath.main(["-i"]) == 0
    assert pymultipath.main(["-v2", "-ll"]) == 0           # -v before another action: taken, changes nothing
    assert pymultipath.main(["-f", "mpatha", "-v", "0"]) == 0
    assert ran == [("assemble_cmd", [], {"find_multipaths": None}),
                   ("assemble_cmd", ["-d", "-v3", "sdb"], {"find_multipaths": None}),
                   ("assemble_cmd", [], {"find_multipaths": "greedy"}),
                   ("topology_cmd", ["-ll"], {}),
                   ("flush_cmd", ["-f", "mpatha"], {})]
    ran.clear()
    # a map-making option with another action is an error, never dropped (upstream's `-f X -d` flushes)
    assert pymultipath.main(["-f", "mpatha", "-d"]) == 1
    assert pymultipath.main(["-ll", "-e"]) == 1
    assert pymultipath.main(["-F", "-R", "2"]) == 1
    assert ran == []
    err = capsys.readouterr().err
    assert "-d (dry run) belongs to making maps" in err
    assert "foreign multipath libraries are not supported" in err and "-R: retrying" in err


def test_the_help_groups_the_options_and_says_what_a_running_daemon_does(capsys):
    assert pymultipath.main(["--help"]) == 0
    out = capsys.readouterr().out
    for words in ("making maps (no action given", "-d                dry run",
                  "-r                force a reload", "-q                allow queue_if_no_path", "-p POLICY",
                  "-b FILE", "-B ", "-R N, -e, -D",
                  'asks it to create\n  ("add map WWID")', '("reconfigure", then "reload map"'):
        assert words in out, words
    assert out.index("making maps") < out.index("udev helper:") < out.index("maps:\n")


# --- a fake system -------------------------------------------------------------------------------------

def _path(dev: str, minor: int, wwid: str | None, *, size: int = 131072, prio: int = 50,
          **facts: object) -> tuple[PathFacts, PathState]:
    f = PathFacts(dev=dev, dev_t=f"8:{minor}", wwid=wwid, vendor="LIO-ORG", product="disk", **facts)
    return f, PathState(dev=dev, dev_t=f"8:{minor}", facts=f, hcil=f"3:0:0:{minor // 16}", size=size,
                        prio=prio)


def _system(conf: str = GREEDY, *, live: dict[str, list[int]] | None = None,
            wwids: frozenset[str] = frozenset(), failed: frozenset[str] = frozenset(),
            paths: list[tuple[str, int, str | None]] | None = None, queueing: bool = False):
    """(config, state, world): sdb+sdc carry 36001, sdd+sde 36002, sdf alone 36003; `live`: maps that
    exist, name -> minors of their paths (WWID of the first)."""
    cfg = parse_text(conf)
    made = [_path(d, n, w) for d, n, w in (paths or [("sdb", 16, "36001"), ("sdc", 32, "36001"),
                                                      ("sdd", 48, "36002"), ("sde", 64, "36002"),
                                                      ("sdf", 80, "36003")])]
    state = DaemonState(paths={p.dev: p for _, p in made})
    maps = []
    for i, (name, minors) in enumerate((live or {}).items()):
        members = [p for _, p in made if int(p.dev_t.split(":")[1]) in minors]
        wwid = members[0].wwid
        def r(kw, w=wwid):
            return cfg.resolve(kw, wwid=w, vendor="LIO-ORG", product="disk")

        m = MapState(name=name, wwid=wwid, dm_dev=f"dm-{i}", table=pplan.build_table(members, r,
                                                                                       queueing=queueing))
        state.maps[name] = m
        state.relink(m)
        maps.append(MapFacts(name, m.uuid, tuple(p.dev for p in members)))
    world = World(paths=tuple(f for f, _ in made), maps=tuple(maps), wwids=wwids, failed_wwids=failed,
                  daemon_running=False)
    return cfg, state, world


def _new(cfg, plans):
    """The maps to create with the configuration of each (for names())."""
    def resolver(wwid):
        return lambda kw: cfg.resolve(kw, wwid=wwid)

    return [(p.wwid, resolver(p.wwid)) for p in plans if p.action is ac.Action.CREATE]


def _plans(cfg, state, world, opts=None, named=None, daemon_running=False):
    opts = opts or ac.Options()
    sc = ac.scope(state, world, cfg, named)
    return sc, {p.wwid: p for p in ac.plan_all(state, sc, cfg, opts, daemon_running=daemon_running)}


# --- which WWIDs the arguments name ----------------------------------------------------------------------

def test_arguments_designate_maps_paths_aliases_and_wwids():
    cfg = parse_text(GREEDY + "multipaths {\n\tmultipath {\n\t\twwid 36003\n\t\talias data\n\t}\n}\n")
    _, state, world = _system(live={"mpatha": [16, 32]})
    world = World(paths=(*world.paths, PathFacts(dev="sdb1", devtype="partition", dev_t="8:17")),
                  maps=world.maps)
    bindings, aliases = {"mpathq": "3600q"}, ac.config_aliases(cfg)

    def wwid(arg: str, ident: str | None = None) -> str | None:
        return ac.designate(arg, ident or arg, state, world, bindings, aliases).wwid

    assert wwid("mpatha") == wwid("dm-0") == wwid("36001") == wwid("/dev/mapper/mpatha", "dm-0") == "36001"
    assert wwid("sdd") == wwid("8:48") == wwid("/dev/sdd", "sdd") == "36002"
    assert wwid("mpathq") == "3600q" and wwid("data") == "36003"
    assert wwid("3600elsewhere") == "3600elsewhere"   # upstream: "or directly a wwid"
    for bad, why in (("sdb1", "not a whole disk"), ("/dev/loop9", "neither a multipath map nor a disk"),
                     ("two words", "invalid WWID")):
        t = ac.designate(bad, bad, state, world, bindings, aliases)
        assert t.wwid is None and why in t.why


# --- the plan of each map ---------------------------------------------------------------------------------

def test_a_named_device_is_made_whatever_find_multipaths_says_and_its_failed_mark_is_lifted():
    cfg, state, world = _system(STRICT, failed=frozenset({"36003"}))
    sc, plans = _plans(cfg, state, world)
    assert {w for w, p in plans.items() if p.action is ac.Action.CREATE} == set()   # strict: none is recorded
    assert sc.verdicts["sdb"].rule == "strict"
    sc, plans = _plans(cfg, state, world, named=["36003"])
    assert list(plans) == ["36003"] and plans["36003"].action is ac.Action.CREATE
    assert plans["36003"].devs == ("sdf",)
    assert sc.verdicts["sdf"].rule == ac.WWIDS_RULE and "36003" not in sc.recorded


def test_plans_create_reload_leave_alone_and_never_remove():
    cfg, state, world = _system(live={"mpatha": [16, 32], "mpathb": [48]})
    _, plans = _plans(cfg, state, world)
    assert plans["36001"].action is ac.Action.UNCHANGED and plans["36001"].name == "mpatha"
    assert plans["36002"].action is ac.Action.RELOAD and plans["36002"].devs == ("sdd", "sde")
    assert plans["36002"].why == "its table differs: paths +8:64"
    assert plans["36003"].action is ac.Action.CREATE and plans["36003"].name == ""
    # a map none of whose paths is left is kept: map making never flushes
    del state.paths["sdb"], state.paths["sdc"]
    world = World(paths=tuple(f for f in world.paths if f.dev not in ("sdb", "sdc")), maps=world.maps)
    _, plans = _plans(cfg, state, world)
    assert plans["36001"].action is ac.Action.KEEP and "does not remove maps" in plans["36001"].why


def test_force_reloads_an_unchanged_map_and_an_impossible_table_is_an_error():
    cfg, state, world = _system(live={"mpatha": [16, 32]})
    _, plans = _plans(cfg, state, world, ac.Options(force_reload=True), named=["36001"])
    p = plans["36001"]
    assert p.action is ac.Action.RELOAD and p.why.startswith("forced (-r)")
    assert p.table is not None and not pplan.needs_reload(state.maps["mpatha"].table, p.table)
    cfg, state, world = _system(paths=[("sdb", 16, "36001"), ("sdc", 32, "36001")])
    state.paths["sdc"].size = 8
    _, plans = _plans(cfg, state, world)
    assert plans["36001"].action is ac.Action.ERROR and "disagree on size" in plans["36001"].why


def test_queueing_is_off_without_a_daemon_unless_q_and_p_shapes_only_new_maps():
    conf = GREEDY.replace("}\n", "\tno_path_retry queue\n}\n", 1)
    cfg, state, world = _system(conf, live={"mpatha": [16, 32]}, queueing=True)
    _, plans = _plans(cfg, state, world, ac.Options(policy="failover"))
    new, old = plans["36002"], plans["36001"]
    assert new.table is not None and not new.table.features.queue_if_no_path
    assert len(new.table.groups) == 2 and "path_grouping_policy failover (-p)" in new.notes
    assert any("queue_if_no_path off" in n for n in new.notes)
    # the live map queues: only that differs, so a message turns it off (as upstream's multipath does)
    assert old.action is ac.Action.QUEUEING and old.queueing is False
    _, plans = _plans(cfg, state, world, ac.Options(allow_queueing=True))
    assert plans["36002"].table.features.queue_if_no_path and plans["36001"].action is ac.Action.UNCHANGED
    _, plans = _plans(cfg, state, world, daemon_running=True)   # what the daemon would do: its configuration
    assert plans["36002"].table.features.queue_if_no_path and not plans["36002"].notes
    assert len(plans["36002"].table.groups) == 1    # LIO-ORG's group_by_prio (equal priorities), not failover


def test_the_plan_is_the_daemons_assembly():
    """The same WWIDs, paths and tables as decide.assemble gives the daemon for a batch of every WWID."""
    from pymultipathd import classify
    from pymultipathd.policy import actions as act
    from pymultipathd.policy import decide
    from pymultipathd.policy import events as ev

    cfg, state, world = _system(live={"mpathb": [48]})
    _, plans = _plans(cfg, state, world, daemon_running=True)
    claimed, _ = classify.assembly_and_verdicts(world, cfg)
    for wwid, devs in claimed.items():
        m = state.map_of_wwid(wwid)
        vendor, product, revision = mapmaker.map_identity(state, devs, m)
        def resolve(kw, w=wwid, v=vendor, p=product, r=revision):
            return cfg.resolve(kw, wwid=w, vendor=v, product=p, revision=r)

        todo = decide.assemble(state, ev.PathsSettled(wwid, devs), resolve)
        made = [a.table for a in todo if isinstance(a, (act.CreateMap, act.ReloadMap))]
        assert [plans[wwid].table] == made or (not made and plans[wwid].action is ac.Action.UNCHANGED)


# --- names ------------------------------------------------------------------------------------------------

def test_names_follow_the_daemons_rule_without_writing():
    cfg = parse_text(GREEDY + "multipaths {\n\tmultipath {\n\t\twwid 36009\n\t\talias data\n\t}\n}\n")
    plain = parse_text("")

    def r(conf, wwid):
        return lambda kw: conf.resolve(kw, wwid=wwid)

    bindings = {"mpatha": "36001", "mpathb": "3600x"}
    new = [(w, r(cfg, w)) for w in ("36004", "36009", "36001", "36003")] + [("36005", r(plain, "36005"))]
    got = ac.names(new, bindings, ["mpathc"])
    assert got == {"36001": ac.Naming("mpatha", ac.NameSource.BOUND),
                   "36003": ac.Naming("mpathd", ac.NameSource.NEW_BINDING, "mpath"),   # c: a live map's name
                   "36004": ac.Naming("mpathe", ac.NameSource.NEW_BINDING, "mpath"),
                   "36005": ac.Naming("36005", ac.NameSource.WWID),                 # no user_friendly_names
                   "36009": ac.Naming("data", ac.NameSource.CONFIGURED)}
    assert ac.names([("36003", r(cfg, "36003"))], bindings, [], read_only=True)["36003"].source is \
        ac.NameSource.WWID


# --- the dry-run report ---------------------------------------------------------------------------------

def _report(verbosity: int, **kw: object) -> str:
    cfg, state, world = _system(live={"mpathb": [48]})
    sc = ac.scope(state, world, cfg, None)
    plans = ac.plan_all(state, sc, cfg, ac.Options(dry_run=True, verbosity=verbosity), daemon_running=False)
    namings = ac.names(_new(cfg, plans), {"mpathb": "36002"}, state.maps)
    return ac.dry_run_report(plans, sc, state, cfg, namings, verbosity, daemon_running=False, **kw)


def test_dry_run_report_at_each_verbosity():
    assert _report(0) == ""
    assert _report(1) == "mpatha\nmpathb\nmpathc\n"
    v2 = _report(2)
    assert v2.startswith("create: mpatha (36001) undef LIO-ORG,disk\n"
                         "size=64M features='0' hwhandler='1 alua' wp=rw\n")
    assert "  |- 3:0:0:1 sdb 8:16 undef undef running\n  `- 3:0:0:2 sdc 8:32 undef undef running\n" in v2
    assert "reload: mpathb (36002) dm-0 LIO-ORG,disk\n" in v2 and "create: mpathc (36003) undef" in v2
    v3 = _report(3)
    assert "36001:\n  sdb 8:16 3:0:0:1 prio 50: yes by rule greedy: find_multipaths greedy" in v3
    assert ("  mpatha: create: no map exists for this WWID\n"
            "  name mpatha: a new alias for the bindings file\n") in v3
    assert "  table: 0 131072 multipath 0 1 alua 1 1 service-time 0 2 1 8:16 1 8:32 1\n" in v3
    assert "  mpathb: reload: its table differs: paths +8:64\n" in v3
    assert "sdd 8:48 3:0:0:3 prio 50: yes by rule member_of_map" in v3


def test_a_named_device_without_a_map_says_why():
    cfg, state, world = _system(STRICT, paths=[("sdb", 16, "36001")])
    world = World(paths=(PathFacts(dev="sdb", dev_t="8:16", wwid="36001", in_use=True),),
                  daemon_running=False)
    cfg = parse_text("defaults {\n\tfind_multipaths greedy\n}\n")
    sc, plans = _plans(cfg, state, world, named=["36001"])
    assert ac.unmade(list(plans.values()), sc) == ["36001: no map: no path is claimed for a map "
                                                   "[sdb: no (in_use)]"]


# --- a running daemon ---------------------------------------------------------------------------------------

def test_what_a_running_daemon_is_asked():
    cfg, state, world = _system(live={"mpathb": [48]})
    _, plans = _plans(cfg, state, world, daemon_running=True)
    got = [(a.command, a.action) for a in ac.asks(list(plans.values()))]
    assert got == [("add map 36001", ac.Action.CREATE), ("reload map mpathb", ac.Action.RELOAD),
                   ("add map 36003", ac.Action.CREATE)]
    daemon = {"mpathb": "36002", "mpathx": "3600x"}
    assert [a.command for a in ac.forced_asks([], daemon)] == ["reload map mpathb", "reload map mpathx"]
    assert [a.command for a in ac.forced_asks(["36002", "36001"], daemon)] == ["add map 36001",
                                                                               "reload map mpathb"]
    # a WWID is one word of the command whatever it holds; a command longer than the protocol's is refused
    assert ac.command("add", "map", 'od"d one') == 'add map "od""d one"'
    with pytest.raises(ac.UsageError):
        ac.command("add", "map", "x" * 600)
    assert ac.parse_daemon_maps("mpatha 36001\nmpathb 36002\n\n") == {"mpatha": "36001", "mpathb": "36002"}


def _delegate(opts: ac.Options, replies: dict[str, str], live=None):
    cfg, state, world = _system(live={"mpathb": [48]})
    sc, plans = _plans(cfg, state, world, opts, daemon_running=True)
    sent: list[str] = []
    out: list[str] = []
    err: list[str] = []

    def send(text: str, timeout: float) -> str:
        sent.append(text)
        return replies.get(text, "ok\n" if not text.startswith("show") else "")

    sh = ac.Shell(opts.verbosity, out.append, err.append)
    ac.delegate(list(plans.values()), sc, opts, sh, send, live or (lambda name: None))
    return sent, "".join(out), "".join(err), sh.failed


def test_without_r_the_daemon_creates_and_reloads_its_maps():
    topo = {"show map 36001 topology": "mpatha (36001) dm-3 LIO-ORG,disk\nsize=64M\n",
            "show map mpathb topology": "mpathb (36002) dm-0 LIO-ORG,disk\n",
            "add map 36003": "fail\nno usable path"}
    sent, out, err, failed = _delegate(ac.Options(), topo)
    assert sent == ["add map 36001", "show map 36001 topology", "reload map mpathb",
                    "show map mpathb topology", "add map 36003"]
    assert out == ("create: mpatha (36001) dm-3 LIO-ORG,disk\nsize=64M\n"
                   "reload: mpathb (36002) dm-0 LIO-ORG,disk\n")
    assert failed and "add map 36003: no usable path" in err
    _, out, _, _ = _delegate(ac.Options(verbosity=1), topo)
    assert out == "mpatha\nmpathb\n"


def test_with_r_the_daemon_reconfigures_then_reloads_and_a_config_gap_is_said():
    listing = {'show maps raw format "%n %w"': "mpathb 36002\nmpathx 3600x\n"}
    sent, _, _, failed = _delegate(ac.Options(force_reload=True), listing)
    assert sent[:2] == ["reconfigure", 'show maps raw format "%n %w"'] and not failed
    assert [s for s in sent if s.startswith("reload")] == ["reload map mpathb", "reload map mpathx"]
    refused = {"reconfigure": "fail\nconfiguration error"}
    sent, _, err, failed = _delegate(ac.Options(force_reload=True), refused)
    assert sent == ["reconfigure"] and failed and "configuration error" in err
    # without -r: a reload the daemon made from its own (older) configuration is reported
    old = pplan.build_table([PathState(dev="sdd", dev_t="8:48", facts=PathFacts(dev="sdd"), size=131072)],
                            lambda kw: {"path_selector": "round-robin 0"}.get(kw, parse_text("").resolve(kw)))
    _, _, err, failed = _delegate(ac.Options(), {}, live=lambda name: old if name == "mpathb" else None)
    assert "mpathb: the daemon's table still differs" in err and "path selector" in err and not failed


# --- carrying out without a daemon ----------------------------------------------------------------------

class _Made:
    def __init__(self, monkeypatch, fail: set[str] = frozenset()):
        self.calls: list[tuple] = []
        self.fail = fail
        monkeypatch.setattr(mapmaker, "create", self.create)
        monkeypatch.setattr(mapmaker, "reload", lambda ctl, name, table: self.calls.append(("reload", name)))
        monkeypatch.setattr(mapmaker, "set_queueing",
                            lambda ctl, name, on: self.calls.append(("queue", name, on)))
        monkeypatch.setattr(mapmaker, "read_back", lambda ctl, m: m)
        monkeypatch.setattr(mapmaker, "partition_maps",
                            lambda ctl, name, t: self.calls.append(("parts", name)))
        monkeypatch.setattr(mapmaker, "announce",
                            lambda devs, action: self.calls.append((action, *devs)) or [])
        monkeypatch.setattr(mapmaker, "apply_transport", lambda work: [])

    def create(self, ctl, name, wwid, table):
        self.calls.append(("create", name, wwid))
        if wwid in self.fail:
            raise DMError("create", name, 16, "busy")


def test_carrying_out_creates_binds_records_and_releases_on_failure(monkeypatch, tmp_path):
    monkeypatch.setenv("PYMULTIPATH_WWIDS", str(tmp_path / "wwids"))
    monkeypatch.setenv("PYMULTIPATH_BINDINGS", str(tmp_path / "bindings"))
    monkeypatch.setenv("PYMULTIPATH_RUNDIR", str(tmp_path / "run"))
    store.mark_failed("36001")
    made = _Made(monkeypatch, fail={"36003"})
    cfg, state, world = _system(live={"mpathb": [48]})
    sc = ac.scope(state, world, cfg, None)
    plans = ac.plan_all(state, sc, cfg, ac.Options(), daemon_running=False)
    namings = ac.names(_new(cfg, plans), store.read_bindings(), state.maps)
    out: list[str] = []
    err: list[str] = []
    sh = ac.Shell(1, out.append, err.append)
    ac.carry_out(object(), plans, ac.Snapshot(state, world), sc, cfg, namings, sh)  # type: ignore[arg-type]
    assert made.calls == [("create", "mpatha", "36001"), ("change", "sdb", "sdc"), ("reload", "mpathb"),
                          ("create", "mpathc", "36003"), ("add", "sdf"), ("parts", "mpatha")]
    assert "".join(out) == "mpatha\nmpathb\n"
    assert sh.failed and "36003: creating map mpathc failed" in "".join(err)
    assert store.read_wwids() == ["36001"]                     # recorded: only the map that was made
    assert store.read_bindings() == {"mpatha": "36001", "mpathc": "36003"}
    assert store.failed_wwids() == {"36003"}                   # set for the failure, lifted for the success


def test_shell_prints_by_level():
    out: list[str] = []
    err: list[str] = []
    sh = ac.Shell(0, out.append, err.append)
    sh.show("x")
    sh.warn("w")
    assert out == [] and err == [] and not sh.failed
    sh.error("e")
    assert err == ["pymultipath: e\n"] and sh.failed


# --- the entry ------------------------------------------------------------------------------------------

def _forbidden(*args: object, **kw: object) -> None:
    raise AssertionError("a dry run changed something")


@pytest.fixture
def entry(monkeypatch, tmp_path):
    """ac.main over the fake system: no device mapper, root, the given configuration; returns
    run(argv, daemon=False) -> (exit status, stdout, stderr)."""
    conf = tmp_path / "multipath.conf"
    conf.write_text(GREEDY)
    monkeypatch.setenv("PYMULTIPATH_CONF", str(conf))
    monkeypatch.setenv("PYMULTIPATH_CONFDIR", str(tmp_path / "conf.d"))
    monkeypatch.setenv("PYMULTIPATH_WWIDS", str(tmp_path / "wwids"))
    monkeypatch.setenv("PYMULTIPATH_BINDINGS", str(tmp_path / "bindings"))
    _, state, world = _system(live={"mpathb": [48]})
    monkeypatch.setattr(ac.os, "geteuid", lambda: 0)
    monkeypatch.setattr(ac, "Control", lambda: object())
    monkeypatch.setattr(ac, "gather", lambda ctl, config: ac.Snapshot(state, world, {"mpathb": "36002"}))

    def run(argv: list[str], capsys, daemon: bool = False) -> tuple[int, str, str]:
        monkeypatch.setattr(ac.facts, "daemon_reachable", lambda: daemon)
        rc = ac.main(argv)
        got = capsys.readouterr()
        return rc, got.out, got.err

    return run


def test_a_dry_run_through_the_entry_changes_nothing(entry, monkeypatch, capsys, tmp_path):
    for name in ("create", "reload", "set_queueing", "partition_maps", "announce", "apply_transport"):
        monkeypatch.setattr(mapmaker, name, _forbidden)
    for name in ("add_wwids", "aliases_for", "mark_failed", "unmark_failed"):
        monkeypatch.setattr(store, name, _forbidden)
    monkeypatch.setattr("pymultipathd.control.client.send", _forbidden)
    rc, out, err = entry(["-d", "-v3"], capsys)
    assert rc == 0, err
    assert "sdb 8:16 3:0:0:1 prio 50: yes by rule greedy" in out and "create: mpatha (36001) undef" in out
    assert "  table: 0 131072 multipath" in out
    rc, out, _ = entry(["-d", "-v3", "sdf"], capsys, daemon=True)   # a running daemon is not asked either
    assert rc == 0 and "pymultipathd is running: without -d" in out and "36001" not in out
    assert not (tmp_path / "wwids").exists() and not (tmp_path / "bindings").exists()


def test_the_entry_refuses_what_a_running_daemon_cannot_honour_and_unknown_devices(entry, capsys):
    rc, _, err = entry(["-p", "multibus"], capsys, daemon=True)
    assert rc == 1 and "-p multibus cannot apply" in err
    rc, _, err = entry(["-d", "/dev/nosuch"], capsys)
    assert rc == 1 and "/dev/nosuch: no such device" in err
    rc, _, err = entry(["-v", "x"], capsys)
    assert rc == 1 and "-v needs a number" in err and "see pymultipath --help" in err


def test_priorities_are_read_side_by_side_and_a_hung_path_does_not_hold_the_others(monkeypatch):
    """A prioritizer's command to a blocked session waits without its timer running: map making must not
    wait for it beyond the prioritizer's budget, nor one hung path's wait add to another's."""
    import threading

    from pymultipathd.classify import PathFacts
    from pymultipathd.cli import assemble_cmd
    from pymultipathd.config import load
    from pymultipathd.paths import checkers, prio
    from pymultipathd.policy.state import DaemonState, PathState

    release = threading.Event()

    def priority(name, dev, args="", timeout=30.0):
        if dev.startswith("hung"):
            release.wait(60)
        if dev == "broken":
            raise OSError(5, "Input/output error")
        return 50

    monkeypatch.setattr(prio, "priority", priority)
    monkeypatch.setattr(checkers, "PRIO_TIMEOUTS", 1)
    config = load.parse_text("defaults {\n prio alua\n checker_timeout 1\n}\n")
    devs = ("hung1", "hung2", "good", "broken")
    paths = {d: PathState(dev=d, dev_t="8:16", facts=PathFacts(dev=d, dev_t="8:16", wwid="3600a"),
                          prio_name="alua", prio_due=True) for d in devs}
    state = DaemonState(paths=paths, maps={})
    sc = type("Scope", (), {"claimed": {"3600a": devs}})()
    out: list[list[str]] = []
    t = threading.Thread(target=lambda: out.append(assemble_cmd.read_priorities(state, sc, config)),
                         daemon=True)
    t.start()
    t.join(30)  # far below the hung reads' 60 s: the budget (2 s) bounded the wait
    release.set()
    assert not t.is_alive() and out, "read_priorities waited on a hung path"
    (problems,) = out
    assert (paths["good"].prio, paths["good"].prio_due) == (50, False)
    assert all(paths[d].prio_due and paths[d].prio == 0 for d in ("hung1", "hung2", "broken"))
    assert sorted(p.split(":")[0] for p in problems) == ["broken", "hung1", "hung2"]
    assert "Input/output error" in next(p for p in problems if p.startswith("broken"))
