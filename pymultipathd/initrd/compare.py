"""Compare the classification inputs of the root and of an initramfs image, and say what each difference does.

Pure: two Inputs and the facts of the present paths in, a Report out. Each difference is typed (Diff), says
what differs in words, and carries its consequence: the present paths the initramfs would classify otherwise
than the root because of that difference alone (the root's inputs with only that one taken from the image),
each with both verdicts and their rules. The report also gives every path's verdict with all the image's
inputs at once.

Both sides are judged as at boot, before any map exists: no maps, no failed markers of this boot, no
smart-mode timers, nothing released or in use yet. Otherwise the maps the initramfs made would decide every
root path ("member_of_map") and hide exactly the differences that break the next boot. The facts supply the
devices, their WWIDs, udev properties, vendors and protocols. Each side classifies with the one classifier
(classify.explain) for udev's helper and for the daemon.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum, StrEnum

from pymultipathd.classify import PathFacts, World, explain
from pymultipathd.config.model import BlacklistSpec, Config
from pymultipathd.initrd.inputs import COMPETING_RULES, OUR_RULES, Inputs, Stage
from pymultipathd.record import record, replace


class Diff(Enum):
    CONFIG_ERROR = "config_error"
    BLACKLIST = "blacklist"
    BLACKLIST_EXCEPTIONS = "blacklist_exceptions"
    FIND_MULTIPATHS = "find_multipaths"
    FORCE_WWIDS = "force_wwids"
    UID_ATTRIBUTE = "uid_attribute"
    DEVICES = "devices"
    OTHER_KEYWORDS = "other_keywords"
    WWIDS = "wwids"
    BINDINGS = "bindings"
    FAILED_MARKERS = "failed_markers"
    UDEV_RULES = "udev_rules"
    HELPER = "helper"
    MODULES = "modules"
    CMDLINE = "cmdline"


# defaults/overrides keywords with a kind of their own; any other keyword is OTHER_KEYWORDS
_KEYWORD_KIND = {
    "find_multipaths": Diff.FIND_MULTIPATHS,
    "find_multipaths_timeout": Diff.FIND_MULTIPATHS,
    "force_wwids": Diff.FORCE_WWIDS,
    "uid_attribute": Diff.UID_ATTRIBUTE,
    "uid_attrs": Diff.UID_ATTRIBUTE,
}

DM_MODULES = ("dm_mod", "dm_multipath")
HANDLER_MODULES = ("scsi_dh_alua", "scsi_dh_emc", "scsi_dh_rdac", "scsi_dh_hp_sw")
# module -> the protocols (PathFacts.protocol prefixes) of the paths that cannot appear without it
TRANSPORT_MODULES: dict[str, tuple[str, ...]] = {
    "sd_mod": ("scsi:",),
    "scsi_transport_iscsi": ("scsi:iscsi",), "libiscsi": ("scsi:iscsi",), "iscsi_tcp": ("scsi:iscsi",),
    "libiscsi_tcp": ("scsi:iscsi",), "ib_iser": ("scsi:iscsi",),
    "scsi_transport_fc": ("scsi:fcp",), "qla2xxx": ("scsi:fcp",), "lpfc": ("scsi:fcp",),
    "bfa": ("scsi:fcp",), "qedf": ("scsi:fcp",), "bnx2fc": ("scsi:fcp",), "fnic": ("scsi:fcp",),
    "zfcp": ("scsi:fcp",), "scsi_transport_sas": ("scsi:sas",), "mpt3sas": ("scsi:sas",),
    "virtio_scsi": ("scsi:unspec",), "nvme": ("nvme:pcie",), "nvme_core": ("nvme:",),
    "nvme_fabrics": ("nvme:tcp", "nvme:fc", "nvme:rdma"), "nvme_tcp": ("nvme:tcp",),
    "nvme_fc": ("nvme:fc",), "nvme_rdma": ("nvme:rdma",), "dasd_mod": ("ccw",),
}
# drivers of one host adapter among several possible for a protocol: a path of it may sit behind another one
_HBA_DRIVERS = frozenset({"qla2xxx", "lpfc", "bfa", "qedf", "bnx2fc", "fnic", "mpt3sas", "virtio_scsi"})
RELEVANT_MODULES = frozenset((*DM_MODULES, *HANDLER_MODULES, *TRANSPORT_MODULES))

# Kernel command-line options that change classification, and the stage(s) that honour them. The udev rules
# and units take nompath and multipath=off; rd.* options belong to the initramfs (dracut's convention, which
# our initramfs integration follows); modprobe.blacklist is the kernel's and modprobe's.
_BOTH = (Stage.ROOT, Stage.INITRAMFS)
DISABLING = {"nompath": _BOTH, "multipath=off": _BOTH, "rd.multipath=0": (Stage.INITRAMFS,)}
MODULE_BLACKLISTS = {"modprobe.blacklist": _BOTH, "module_blacklist": _BOTH,
                     "rd.driver.blacklist": (Stage.INITRAMFS,)}
# options only the initramfs reads that change no classification by themselves: said in a warning
NOTED = {"rd.multipath=default": (Stage.INITRAMFS,)}


class Decision(StrEnum):
    """How one stage treats a path: yes, no, maybe (the classifier), absent (its driver is missing, the
    path never appears) or stuck (claimed, but no map can be made: the disk is hidden and no map comes)."""

    YES = "yes"
    NO = "no"
    MAYBE = "maybe"
    ABSENT = "absent"
    STUCK = "stuck"


@record(frozen=True)
class Outcome:
    decision: Decision
    rule: str  # a classifier rule, or config_error, cmdline:<option>, module:<name>, udev_rules, helper
    words: str


@record(frozen=True)
class Consequence:
    dev: str
    root: Outcome
    initramfs: Outcome

    def text(self) -> str:
        return (f"{self.dev}: root says {_say(self.root)}, initramfs says {_say(self.initramfs)}")


@record(frozen=True)
class Difference:
    kind: Diff
    subject: str  # the keyword, file or module
    root: str
    initramfs: str
    explanation: str
    consequences: tuple[Consequence, ...] = ()
    note: str | None = None  # a consequence the classifier cannot show (names, code that differs)


@record(frozen=True)
class Report:
    differences: tuple[Difference, ...]
    paths: tuple[Consequence, ...]  # every present path, both stages with all their own inputs
    warnings: tuple[str, ...] = ()

    @property
    def agree(self) -> bool:
        return not self.differences


def _say(o: Outcome) -> str:
    return f"{_WORDS[o.decision]} (rule {o.rule})"


_WORDS = {Decision.YES: "multipath", Decision.NO: "not multipath",
          Decision.MAYBE: "maybe (waits for a second path)", Decision.ABSENT: "the device is absent",
          Decision.STUCK: "claimed but no map can be made"}


# ------------------------------------------------------------------------------------ a stage's setup

@record(frozen=True)
class Setup:
    """What one stage classifies with."""

    config: Config | None
    config_error: str | None
    wwids: frozenset[str]
    failed: frozenset[str]
    disabled_by: str | None  # a command-line option that turns multipath off
    rules: bool  # our udev rules are there
    helper: bool  # the program they run is there
    missing_modules: frozenset[str]


def _options(words: Sequence[str], stage: Stage) -> tuple[str | None, frozenset[str], tuple[str, ...]]:
    """(the option disabling multipath, the modules blacklisted, the options noted) for `stage`."""
    disabled = None
    blacklisted: set[str] = set()
    noted = []
    for w in words:
        key, _, value = w.partition("=")
        if stage in DISABLING.get(w, ()) and disabled is None:
            disabled = w
        elif stage in MODULE_BLACKLISTS.get(key, ()):
            blacklisted |= {m.replace("-", "_") for m in value.split(",") if m}
        elif stage in NOTED.get(w, ()):
            noted.append(w)
    return disabled, frozenset(blacklisted), tuple(noted)


def _stage_cmdline(root: Inputs, image: Inputs) -> tuple[list[str], list[str]]:
    """The command line each stage sees: the boot loader's (the root's /proc/cmdline: the image is judged
    for booting this kernel the same way) and, in the initramfs, what the image adds."""
    base = list(root.cmdline or ())
    return base, base + list(image.cmdline or ())


def _setup(side: Inputs, words: Sequence[str], stage: Stage, root_modules: frozenset[str] | None) -> Setup:
    disabled, blacklisted, _ = _options(words, stage)
    missing: frozenset[str] = frozenset()
    if stage is Stage.INITRAMFS and root_modules is not None and side.modules is not None:
        needed = root_modules & RELEVANT_MODULES
        missing = (needed - side.modules) | (needed & blacklisted)
    ours = any(r.name == OUR_RULES for r in side.rules)
    return Setup(side.config, side.config_error, side.wwids, side.failed_markers, disabled, ours,
                 side.helper.front_present or not ours, missing)


# ------------------------------------------------------------------------------------------ outcomes

def _wwid_under(path: PathFacts, config: Config, base: Config | None) -> PathFacts:
    """The path's WWID as `config` reads it. The facts carry the one the root's configuration read; where
    `config` names another udev property, the WWID comes from that property."""
    if base is None:
        return path
    attr = config.uid_attribute_for(path.dev, vendor=path.vendor, product=path.product) or None
    if attr == (base.uid_attribute_for(path.dev, vendor=path.vendor, product=path.product) or None):
        return path
    if attr is None:
        return path  # read from sysfs: the facts' WWID is the best there is
    return replace(path, wwid=path.properties.get(attr) or None)


def boot_world(paths: Sequence[PathFacts], setup: Setup, base: Config | None) -> World:
    """The world of the present paths as at boot: no maps, markers, timers; nothing released or in use."""
    fresh = []
    for p in paths:
        p = replace(p, holders=(), in_use=False, released=False)
        if setup.config is not None:
            p = _wwid_under(p, setup.config, base)
        fresh.append(p)
    return World(paths=tuple(fresh), maps=(), wwids=setup.wwids, failed_wwids=setup.failed,
                 daemon_running=True, now=0.0, timers={})


def outcomes(paths: Sequence[PathFacts], setup: Setup, base: Config | None) -> dict[str, Outcome]:
    """dev -> how a stage with `setup` treats each present path at boot."""
    world = boot_world(paths, setup, base)
    out: dict[str, Outcome] = {}
    for p in world.paths:
        out[p.dev] = _outcome(p, world, setup)
    return out


def _outcome(p: PathFacts, world: World, setup: Setup) -> Outcome:
    if setup.config is None:
        return Outcome(Decision.NO, "config_error", f"the configuration does not load: {setup.config_error}")
    if setup.disabled_by is not None:
        return Outcome(Decision.NO, f"cmdline:{setup.disabled_by}",
                       f"{setup.disabled_by} on the kernel command line turns multipath off")
    for module in sorted(setup.missing_modules):
        protos = TRANSPORT_MODULES.get(module, ())
        if p.protocol and protos and p.protocol.startswith(protos):
            maybe = " if it sits behind that adapter" if module in _HBA_DRIVERS else ""
            return Outcome(Decision.ABSENT, f"module:{module}",
                           f"{p.dev} ({p.protocol}) cannot appear without kernel module {module}{maybe}")
    udev, steps = explain(p, world, setup.config, for_udev=True)
    daemon = explain(p, world, setup.config, for_udev=False)[0]
    words = steps[-1].words if steps else ""
    if daemon.decision != udev.decision:
        words += f" (the daemon: {daemon.decision}, rule {daemon.rule})"
    if not setup.rules:
        return Outcome(Decision.NO, "udev_rules", f"no {OUR_RULES}: udev does not classify {p.dev}; the "
                       f"daemon would say {daemon.decision} (rule {daemon.rule})")
    if not setup.helper:
        return Outcome(Decision.NO, "helper", f"the program {OUR_RULES} runs is missing: udev imports "
                       f"nothing for {p.dev}")
    if udev.decision == "yes":
        gone = [m for m in DM_MODULES if m in setup.missing_modules]
        if gone:
            return Outcome(Decision.STUCK, f"module:{gone[0]}", f"{p.dev} is claimed ({udev.rule}), but "
                           f"without kernel module {gone[0]} no map can be made")
    return Outcome(Decision(udev.decision), udev.rule, words)


# ------------------------------------------------------------------------------------------ differences

def _fmt_list(items: Sequence[str], most: int = 8) -> str:
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "") if items else "none"


def _spec_entries(spec: BlacklistSpec) -> list[str]:
    out = [f"{c} {v!r}" for c in ("devnode", "wwid", "property", "protocol") for v in getattr(spec, c)]
    out += [f"device {d.vendor!r}:{d.product!r}" for d in spec.device]
    return out


def _set_delta(root: Sequence[str], image: Sequence[str]) -> str:
    only_root = [x for x in root if x not in image]
    only_image = [x for x in image if x not in root]
    parts = []
    if only_root:
        parts.append(f"only in the root: {_fmt_list(only_root)}")
    if only_image:
        parts.append(f"only in the initramfs: {_fmt_list(only_image)}")
    return "; ".join(parts) or "the same entries in another order"


@record(frozen=True)
class Facet:
    """One difference between two configurations."""

    kind: Diff
    subject: str
    root: str  # the value in the root's
    initramfs: str
    explanation: str
    swap: Callable[[Config, Config], Config]  # (root's, image's) -> the root's with this facet the image's


def _with_key(section: str, kw: str) -> Callable[[Config, Config], Config]:
    """The base configuration with `kw` of its `section` dict ("defaults", "overrides") as the other's."""

    def swap(base: Config, other: Config) -> Config:
        values = dict(getattr(base, section))
        if kw in getattr(other, section):
            values[kw] = getattr(other, section)[kw]
        else:
            values.pop(kw, None)
        return replace(base, **{section: values})

    return swap


def _with_field(name: str) -> Callable[[Config, Config], Config]:
    return lambda base, other: replace(base, **{name: getattr(other, name)})


def config_facets(a: Config, b: Config) -> list[Facet]:
    """Every difference between two configurations that can matter, keyword by keyword."""
    out: list[Facet] = []
    for name, kind in (("blacklist", Diff.BLACKLIST), ("blacklist_exceptions", Diff.BLACKLIST_EXCEPTIONS)):
        ea, eb = _spec_entries(getattr(a, name)), _spec_entries(getattr(b, name))
        if sorted(ea) != sorted(eb):  # any entry that matches decides: their order does not matter
            out.append(Facet(kind, name, f"{len(ea)} entries", f"{len(eb)} entries",
                             f"{name}: {_set_delta(ea, eb)}", _with_field(name)))
    values: tuple[tuple[str, Callable[[Config, str], object]], ...] = (
        ("defaults", lambda c, kw: c.default_value(kw)), ("overrides", lambda c, kw: c.overrides.get(kw)))
    for section, value in values:
        for kw in sorted(set(getattr(a, section)) | set(getattr(b, section))):
            va, vb = value(a, kw), value(b, kw)
            if va != vb:
                out.append(Facet(_KEYWORD_KIND.get(kw, Diff.OTHER_KEYWORDS),
                                 kw if section == "defaults" else f"{section} {kw}", str(va), str(vb),
                                 f"{section} {kw}: {va} in the root, {vb} in the initramfs",
                                 _with_key(section, kw)))
    for name, kind, what in (("devices", Diff.DEVICES, "devices section"),
                             ("multipaths", Diff.OTHER_KEYWORDS, "multipaths section"),
                             ("protocols", Diff.OTHER_KEYWORDS, "overrides' protocol subsections")):
        la, lb = getattr(a, name), getattr(b, name)
        if la != lb:
            ra, rb = [repr(sorted(e.items())) for e in la], [repr(sorted(e.items())) for e in lb]
            out.append(Facet(kind, what, f"{len(la)} entries", f"{len(lb)} entries",
                             f"{what}: {_set_delta(ra, rb)}", _with_field(name)))
    return out


class _Judge:
    """Consequences: the root's setup with one thing taken from the image's, against the root's own."""

    def __init__(self, paths: Sequence[PathFacts], root: Setup) -> None:
        self.paths = paths
        self.root = root
        self.base = outcomes(paths, root, root.config)

    def __call__(self, changed: Setup) -> tuple[Consequence, ...]:
        other = outcomes(self.paths, changed, self.root.config)
        return tuple(Consequence(dev, self.base[dev], other[dev]) for dev in sorted(self.base)
                     if self.base[dev].decision != other[dev].decision)


def compare(root: Inputs, image: Inputs, paths: Sequence[PathFacts]) -> Report:
    """Every difference between the root's and the image's classification inputs, with its consequence for
    `paths` (the present paths' facts; none: consequences are empty)."""
    root_words, image_words = _stage_cmdline(root, image)
    rs = _setup(root, root_words, Stage.ROOT, root.modules)
    ims = _setup(image, image_words, Stage.INITRAMFS, root.modules)
    judge = _Judge(paths, rs)
    diffs: list[Difference] = []

    def add(kind: Diff, subject: str, rv: str, iv: str, why: str, changed: Setup | None,
            note: str | None = None) -> None:
        diffs.append(Difference(kind, subject, rv, iv, why, judge(changed) if changed else (), note))

    # configuration
    if root.config is None or image.config is None:
        if (root.config_error or "") != (image.config_error or ""):
            add(Diff.CONFIG_ERROR, "multipath.conf", root.config_error or "loads",
                image.config_error or "loads", "the configuration loads on one side only",
                replace(rs, config=image.config, config_error=image.config_error))
    else:
        for f in config_facets(root.config, image.config):
            add(f.kind, f.subject, f.root, f.initramfs, f.explanation,
                replace(rs, config=f.swap(root.config, image.config)))

    if root.wwids != image.wwids:
        add(Diff.WWIDS, "wwids file", f"{len(root.wwids)} WWIDs", f"{len(image.wwids)} WWIDs",
            f"wwids file: {_set_delta(sorted(root.wwids), sorted(image.wwids))}",
            replace(rs, wwids=image.wwids))
    _bindings(root, image, paths, add)
    if rs.failed != ims.failed:
        add(Diff.FAILED_MARKERS, "failed_wwids", _fmt_list(sorted(rs.failed)), _fmt_list(sorted(ims.failed)),
            "the image carries failed markers: at every boot these WWIDs count as failed until removed",
            replace(rs, failed=ims.failed))
    warnings = _rules(root, image, rs, ims, add)
    _helper(root, image, rs, ims, add)
    warnings += _modules(root, image, rs, ims, add, paths)
    def source(option: str | None) -> str:
        return "the image's etc/cmdline.d" if option in (image.cmdline or ()) else "the boot loader's line"

    for noted in _options(image_words, Stage.INITRAMFS)[2]:
        warnings.append(f"{noted} (from {source(noted)}) is read by the initramfs only; it decides no "
                        "classification here")
    if rs.disabled_by != ims.disabled_by:
        option = ims.disabled_by or rs.disabled_by
        add(Diff.CMDLINE, "kernel command line", rs.disabled_by or "multipath on",
            ims.disabled_by or "multipath on",
            f"{option} (from {source(option)}) turns multipath off in the "
            f"{'initramfs' if ims.disabled_by else 'root'} only", replace(rs, disabled_by=ims.disabled_by))
    final = outcomes(paths, ims, root.config)
    overall = tuple(Consequence(dev, judge.base[dev], final[dev]) for dev in sorted(judge.base))
    notes = tuple(f"{image.origin}: {n}" for n in image.notes)
    return Report(tuple(diffs), overall, tuple(warnings) + notes)


_Add = Callable[[Diff, str, str, str, str, "Setup | None", "str | None"], None]


def _bindings(root: Inputs, image: Inputs, paths: Sequence[PathFacts], add: _Add) -> None:
    ra, ia = {w: a for a, w in root.bindings}, {w: a for a, w in image.bindings}
    if ra == ia:
        return
    by_wwid: dict[str, list[str]] = {}
    for p in paths:
        if p.wwid:
            by_wwid.setdefault(p.wwid, []).append(p.dev)
    named = [f"WWID {w} ({', '.join(sorted(devs))}): map {ia.get(w) or 'unnamed'} in the initramfs, "
             f"{ra.get(w) or 'unnamed'} in the root" for w, devs in sorted(by_wwid.items())
             if ra.get(w) != ia.get(w)]
    changed = sorted(w for w in set(ra) | set(ia) if ra.get(w) != ia.get(w))
    add(Diff.BINDINGS, "bindings file", f"{len(ra)} aliases", f"{len(ia)} aliases",
        f"bindings file: other aliases for {_fmt_list(changed)}", None,
        "; ".join(named) + ("; the map is renamed after switching root, and anything naming it by the "
                            "initramfs's name breaks" if named else "")
        or "no present path affected (no map of theirs is named differently)")


def _rules(root: Inputs, image: Inputs, rs: Setup, ims: Setup, add: _Add) -> list[str]:
    warnings = []
    rr, ir = {r.name: r for r in root.rules}, {r.name: r for r in image.rules}
    a, b = rr.get(OUR_RULES), ir.get(OUR_RULES)
    if (a.digest if a else None) != (b.digest if b else None):
        if a is None or b is None:
            add(Diff.UDEV_RULES, OUR_RULES, a.path if a else "missing", b.path if b else "missing",
                f"our udev rules are missing from the {'initramfs' if b is None else 'root'}",
                replace(rs, rules=ims.rules, helper=ims.helper), None)
        else:
            add(Diff.UDEV_RULES, OUR_RULES, f"sha256 {a.digest[:12]}", f"sha256 {b.digest[:12]}",
                "our udev rules differ between the root and the initramfs", None,
                "the rules' effect is not computed here: rebuild the image so both run the same rules")
    for name in COMPETING_RULES:
        x, y = rr.get(name), ir.get(name)
        for side, found in ((Stage.ROOT.value, x), (Stage.INITRAMFS.value, y)):
            if found is not None:
                warnings.append(f"{side}: {found.path} of multipath-tools also classifies disks, with "
                                "another classifier; mask it (docs/classification.md)")
        if (x is None) != (y is None):
            add(Diff.UDEV_RULES, name, x.path if x else "missing", y.path if y else "missing",
                f"multipath-tools' {name} is in the {'root' if x else 'initramfs'} only", None,
                "its own `multipath -u` decides there, which may disagree with ours")
    return warnings


def _helper(root: Inputs, image: Inputs, rs: Setup, ims: Setup, add: _Add) -> None:
    rh, ih = root.helper, image.helper
    if rh.front_present != ih.front_present and rs.rules and ims.rules:  # else the rules say it
        add(Diff.HELPER, rh.front or ih.front or "helper", "present" if rh.front_present else "missing",
            "present" if ih.front_present else "missing",
            "the program our udev rules run is missing from the "
            f"{'initramfs' if rh.front_present else 'root'}", replace(rs, helper=ims.helper), None)
    if rh.fingerprint != ih.fingerprint:
        add(Diff.HELPER, "classifier code", _code(rh.fingerprint, rh.version),
            _code(ih.fingerprint, ih.version),
            "the initramfs runs other classifier code than the root (another pymultipathd)"
            if rh.fingerprint and ih.fingerprint else
            f"pymultipathd is missing from the {'initramfs' if rh.fingerprint else 'root'}", None,
            "the image's code is not run here, so its verdicts are not computed: rebuild the image")


def _code(fp: str | None, version: str | None) -> str:
    return f"{version or 'version unknown'}, sha256 {fp[:12]}" if fp else "missing"


def _modules(root: Inputs, image: Inputs, rs: Setup, ims: Setup, add: _Add,
             paths: Sequence[PathFacts]) -> list[str]:
    if root.modules is None or image.modules is None:
        return []  # not known on one side: said in the notes, not a difference
    warnings = []
    for module in sorted(ims.missing_modules):
        where = "blacklisted on its command line" if module in image.modules else "missing from the image"
        protos = TRANSPORT_MODULES.get(module, ())
        if module in _HBA_DRIVERS and not any(p.protocol and p.protocol.startswith(protos) for p in paths):
            # a driver loaded for no present path: a host-only image leaves it out, and rebuilding cannot
            # change that
            warnings.append(f"kernel module {module} is loaded in the root but {where}; no present path "
                            "needs it")
            continue
        role = ("a device-mapper module: no multipath map can be made" if module in DM_MODULES else
                "a SCSI device handler: maps are made without it" if module in HANDLER_MODULES else
                "a driver of the paths' transport: its paths do not appear")
        add(Diff.MODULES, module, "loaded or built in", where, f"kernel module {module} ({role}) is {where}",
            replace(rs, missing_modules=frozenset({module})), None)
    return warnings
