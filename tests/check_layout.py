#!/usr/bin/env python3
"""check_layout.py: the layout rules of docs/architecture.md, checked on the real build.

  python3 check_layout.py SOURCE_DIR LIBMOE_A [--print]

Fails (exit 1, naming what is wrong) when
  - two source files of libmoe call each other, directly or around a longer loop (a file-level
    cycle), read from the object files' defined (T/D/B/R) and undefined (U) symbols with `nm`;
  - a source file passes MAX_FILE lines, or a room (a top-level folder, or a subfolder of
    trainer/) passes MAX_ROOM lines, unless it is listed in ALLOWED_LONG with the reason;
  - a file outside comm/ includes <mpi.h> or <hwloc.h> (tests may: they are not part of moe);
  - a room's sources exist without the room's manual header.
--print prints the rooms with their line counts and the graph's longest chains.
"""
import os
import subprocess
import sys

MAX_FILE = 800
MAX_ROOM = 3000
# file -> why it may pass MAX_FILE (keep this list short and every reason true)
ALLOWED_LONG = {}
# room -> its manual header (relative to the source dir)
ROOMS = {
    "common": "common/moe-common.h",
    "proto": "proto/config.h",
    "router": "router/router.h",
    "experts": "experts/experts.h",
    "comm": "comm/comm.h",
    "params": "params/params.h",
    "hf": "hf/hf.h",
    "trainer": "trainer/train.h",
    "trainer/model": "trainer/model/model.h",
    "trainer/ep": "trainer/ep/ep-layer.h",
    "trainer/data": "trainer/data/data.h",
    "trainer/checkpoint": "trainer/checkpoint/checkpoint.h",
    "trainer/trace": "trainer/trace/trace.h",
    "routes": "routes/routes.h",
    "bench": "bench/bench.h",
    "report": "report/report.h",
    "sweep": "sweep/sweep.h",
    "generate": "generate/generate.h",
    "interop": "interop/interop.h",
    "cli": "cli/cli.h",
}


def room_of(rel):
    parts = rel.split("/")
    if parts[0] == "trainer" and len(parts) > 2:
        return "trainer/" + parts[1]
    return parts[0]


def sources(src):
    out = []
    for room in ROOMS:
        d = os.path.join(src, room)
        for f in sorted(os.listdir(d)):
            if f.endswith((".c", ".h")):
                out.append(room + "/" + f)
    return out


def lines(path):
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f)


def symbol_graph(lib):
    """object name -> (defined symbols, undefined symbols)"""
    out = subprocess.run(["nm", "-A", lib], capture_output=True, text=True, check=True).stdout
    objs = {}
    for line in out.splitlines():
        # libmoe.a:file.c.o:0000000000000000 T name   |   libmoe.a:file.c.o:                 U name
        head, _, rest = line.rpartition(":")
        obj = head.split(":")[-1]
        f = rest.split()
        if len(f) < 2:
            continue
        kind, name = f[-2], f[-1]
        d, u = objs.setdefault(obj, (set(), set()))
        if kind == "U":
            u.add(name)
        elif kind in "TDBRCVW":
            d.add(name)
    return objs


def find_cycles(edges):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, comps, n = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return comps


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    src, lib = sys.argv[1], sys.argv[2]
    show = "--print" in sys.argv
    errors = []

    # rooms, files, line counts
    room_lines = {}
    for room, header in ROOMS.items():
        if not os.path.isfile(os.path.join(src, header)):
            errors.append(f"room {room}/ has no manual header {header}")
    for rel in sources(src):
        n = lines(os.path.join(src, rel))
        room_lines[room_of(rel)] = room_lines.get(room_of(rel), 0) + n
        if n > MAX_FILE and rel not in ALLOWED_LONG:
            errors.append(f"{rel}: {n} lines (more than {MAX_FILE}): split it, or list it in "
                          f"ALLOWED_LONG of tests/check_layout.py with the reason")
        if not rel.startswith("comm/"):
            with open(os.path.join(src, rel), encoding="utf-8") as f:
                for i, line in enumerate(f, 1):
                    s = line.strip()
                    if s.startswith("#include") and ("<mpi.h>" in s or "<hwloc.h>" in s):
                        errors.append(f"{rel}:{i}: includes {s.split()[1]}; only comm/ may")
    for room, n in sorted(room_lines.items()):
        if n > MAX_ROOM:
            errors.append(f"room {room}/: {n} lines (more than {MAX_ROOM}): give part of it a room")
    if show:
        print("rooms (lines of .c and .h):")
        for room in ROOMS:
            print(f"  {room + '/':22s} {room_lines.get(room, 0):6d}  manual: {ROOMS[room]}")
        print(f"  {'total':22s} {sum(room_lines.values()):6d}")

    # file-level call graph from the objects of libmoe
    objs = symbol_graph(lib)
    owner = {}
    for obj, (d, _) in objs.items():
        for s in d:
            owner[s] = obj
    edges = {}
    for obj, (_, u) in objs.items():
        for s in u:
            o = owner.get(s)
            if o and o != obj:
                edges.setdefault(obj, set()).add(o)
    for comp in find_cycles(edges):
        pairs = []
        for a in comp:
            for b in sorted(edges.get(a, ())):
                if b in comp:
                    why = sorted(s for s in objs[a][1] if owner.get(s) == b)[:3]
                    pairs.append(f"{a} -> {b} ({', '.join(why)})")
        errors.append("file-level cycle between " + ", ".join(comp) + ":\n    " +
                      "\n    ".join(pairs))
    if show:
        print(f"call graph: {len(objs)} objects, {sum(len(v) for v in edges.values())} edges "
              f"between files, no cycles" if not find_cycles(edges) else "")

    for e in errors:
        print("check_layout: " + e, file=sys.stderr)
    if not errors:
        print(f"check_layout: ok ({len(room_lines)} rooms, {len(objs)} objects, no file over "
              f"{MAX_FILE} lines, no room over {MAX_ROOM}, no file-level cycle)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
