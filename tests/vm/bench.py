"""`make bench`: run every tests/vm/bench_*.py module's `run() -> dict` in this one boot (inside the VM).

    bench.py [NAME ...]   only the named benchmarks (bench_NAME.py), default all

Results go to /mnt/out/bench.json (out/vm/bench/bench.json on the host) as {name: result}; a benchmark that
raises is reported with its error and makes the exit code 1. Benchmarks measure; nothing here asserts a time.
"""

from __future__ import annotations

import glob
import importlib
import json
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = "/mnt/out/bench.json"


def main(argv: list[str]) -> int:
    names = argv or sorted(os.path.basename(p)[6:-3] for p in glob.glob(f"{HERE}/bench_*.py"))
    results: dict[str, object] = {}
    failed = False
    for name in names:
        print(f"\n== bench {name}", flush=True)
        t0 = time.monotonic()
        try:
            mod = importlib.import_module(f"tests.vm.bench_{name}")
            results[name] = mod.run()
        except Exception as e:  # one broken benchmark must not hide the others' numbers
            traceback.print_exc()
            results[name] = {"error": repr(e)}
            failed = True
        print(json.dumps(results[name], indent=2, default=str), flush=True)
        print(f"== bench {name}: {time.monotonic() - t0:.0f} s", flush=True)
    tmp = OUT + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2, default=str)
    os.replace(tmp, OUT)
    print(f"\nresults: {OUT}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
