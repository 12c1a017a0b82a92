"""`pymultipath classify --facts FILE [--json] [--explain]` and `pymultipath snapshot [-o FILE]`.

classify runs the classifier over a JSON snapshot with no access to the live system (support cases, what-if
on a configuration change with the global --config). snapshot writes that JSON from this system. The JSON is
validated here, at the edge, with pydantic; the classifier itself only sees plain records.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pymultipathd.classify import MapFacts, PathFacts, World, explain
from pymultipathd.errors import PymultipathError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PathModel(_Strict):
    dev: str = Field(min_length=1)
    devtype: str | None = "disk"
    dev_t: str = ""
    wwid: str | None = None
    vendor: str | None = None
    product: str | None = None
    protocol: str | None = None
    properties: dict[str, str] = Field(default_factory=dict)
    holders: list[str] = Field(default_factory=list)
    in_use: bool = False
    hidden: bool = False
    released: bool = False


class MapModel(_Strict):
    name: str
    uuid: str
    paths: list[str] = Field(default_factory=list)


class SnapshotModel(_Strict):
    paths: list[PathModel] = Field(default_factory=list)
    maps: list[MapModel] = Field(default_factory=list)
    wwids: list[str] = Field(default_factory=list)
    failed_wwids: list[str] = Field(default_factory=list)
    daemon_running: bool = True
    now: float = 0.0
    timers: dict[str, float] = Field(default_factory=dict)


class FactsFileError(PymultipathError):
    """A snapshot file that cannot be used; the message names the file and the field."""


def world_from_json(data: object, filename: str = "<facts>") -> World:
    try:
        snap = SnapshotModel.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(part) for part in err['loc']) or '(top level)'}: {err['msg']}"
                             for err in e.errors())
        raise FactsFileError(f"{filename}: invalid facts: {problems}") from None
    paths = tuple(PathFacts(**{**p.model_dump(), "holders": tuple(p.holders)}) for p in snap.paths)
    maps = tuple(MapFacts(m.name, m.uuid, tuple(m.paths)) for m in snap.maps)
    return World(paths=paths, maps=maps, wwids=frozenset(snap.wwids),
                 failed_wwids=frozenset(snap.failed_wwids), daemon_running=snap.daemon_running,
                 now=snap.now, timers=dict(snap.timers))


def world_to_json(world: World) -> dict[str, object]:
    return SnapshotModel(
        paths=[PathModel(dev=p.dev, devtype=p.devtype, dev_t=p.dev_t, wwid=p.wwid, vendor=p.vendor,
                         product=p.product, protocol=p.protocol, properties=dict(p.properties),
                         holders=list(p.holders), in_use=p.in_use, hidden=p.hidden, released=p.released)
               for p in world.paths],
        maps=[MapModel(name=m.name, uuid=m.uuid, paths=list(m.paths)) for m in world.maps],
        wwids=sorted(world.wwids), failed_wwids=sorted(world.failed_wwids),
        daemon_running=world.daemon_running, now=world.now, timers=dict(world.timers),
    ).model_dump()


def load_facts(filename: str) -> World:
    try:
        with open(filename, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise FactsFileError(f"{filename}: cannot read: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise FactsFileError(f"{filename}:{e.lineno}: not JSON: {e.msg}") from None
    except UnicodeDecodeError as e:  # a ValueError, but not a JSONDecodeError
        raise FactsFileError(f"{filename}: not JSON: not UTF-8 at byte {e.start}") from None
    return world_from_json(data, filename)


def _classify(args: argparse.Namespace) -> int:
    from pymultipathd.config.load import ConfigError, load_config

    try:
        world = load_facts(args.facts)
        config = load_config()
    except (FactsFileError, ConfigError) as e:
        print(f"pymultipath classify: {e}", file=sys.stderr)
        return 1
    results = []
    for path in world.paths:
        # the daemon's view: a snapshot's daemon_running is a recorded fact, applied as `-u` would
        verdict, steps = explain(path, world, config, for_udev=True)
        results.append({"dev": path.dev, "verdict": verdict.decision, "rule": verdict.rule,
                        "wait_until": verdict.wait_until})
        if args.explain:
            for s in steps:
                print(f"  {'-' if s.outcome == 'pass' else '=>'} {s.rule}: {s.words}", file=sys.stderr)
            print(f"{path.dev}: {verdict.decision} (rule {verdict.rule})", file=sys.stderr)
    if args.json:
        json.dump({"paths": results}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for r in results:
            wait = f" until {r['wait_until']:.0f}" if r["wait_until"] is not None else ""
            print(f"{r['dev']}\t{r['verdict']}\t{r['rule']}{wait}")
    return 0


def _write_atomic(filename: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(filename))
    fd, tmp = tempfile.mkstemp(prefix=".snapshot.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filename)
    except BaseException:
        os.unlink(tmp)
        raise


def _snapshot(args: argparse.Namespace) -> int:
    from pymultipathd.config.load import ConfigError, load_config
    from pymultipathd.paths import facts

    try:
        config = load_config()
    except ConfigError as e:
        print(f"pymultipath snapshot: {e}", file=sys.stderr)
        return 1
    text = json.dumps(world_to_json(facts.world_all(config)), indent=2) + "\n"
    if args.output and args.output != "-":
        try:
            _write_atomic(args.output, text)
        except OSError as e:
            print(f"pymultipath snapshot: {args.output}: {e.strerror or e}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


def main(argv: list[str]) -> int:
    command, rest = argv[0], argv[1:]
    if command == "snapshot":
        parser = argparse.ArgumentParser(prog="pymultipath snapshot",
                                         description="Write a JSON snapshot of this system's paths and maps.")
        parser.add_argument("-o", "--output", help="file to write (default: standard output)")
        return _snapshot(parser.parse_args(rest))
    parser = argparse.ArgumentParser(prog="pymultipath classify",
                                     description="Classify the paths of a JSON snapshot, offline.")
    parser.add_argument("--facts", required=True, help="snapshot file (see `pymultipath snapshot`)")
    parser.add_argument("--json", action="store_true", help="JSON output")
    parser.add_argument("--explain", action="store_true", help="every rule considered, on stderr")
    return _classify(parser.parse_args(rest))
