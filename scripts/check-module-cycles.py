#!/usr/bin/env python3
"""Fails when modules of the edge crate import each other in a circle.

Every `crate::a::b::...` and `super::...` path in a module's source (outside its
`#[cfg(test)]` tests) is an edge to the longest module it names; `mod.rs` files are
the module of their folder. A strongly connected component of more than one module
is a circle, printed with the paths that close it.

Usage: scripts/check-module-cycles.py [SRC_DIR]   (default: src)
"""
import os
import re
import sys

src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
src = os.path.normpath(src)

modules = {}  # "a::b" -> file path
for root, _, files in os.walk(src):
    for name in files:
        if not name.endswith(".rs"):
            continue
        path = os.path.join(root, name)
        rel = os.path.relpath(path, src)[:-3].split(os.sep)
        if rel in (["main"], ["lib"]):
            continue
        if rel[-1] == "mod":
            rel = rel[:-1]
        modules["::".join(rel)] = path


def strip_tests(text):
    """Drops `#[cfg(test)] mod ... { ... }` blocks: tests may use anything."""
    out, i = [], 0
    pattern = re.compile(r"#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{")
    while True:
        m = pattern.search(text, i)
        if not m:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def resolve(words):
    """The longest known module named by a path's leading words."""
    for n in range(len(words), 0, -1):
        name = "::".join(words[:n])
        if name in modules:
            return name
    return None


def expand_use_groups(text):
    """`use crate::a::{b, c::d}` -> `crate::a::b crate::a::c::d` (one level is enough)."""
    def repl(m):
        base, inner = m.group(1), m.group(2)
        items = [p.strip() for p in inner.split(",") if p.strip()]
        return " ".join(f"{base}::{p}" for p in items)
    return re.sub(r"((?:crate|super)(?:::\w+)*)::\{([^{}]*)\}", repl, text)


edges = {m: {} for m in modules}
path_re = re.compile(r"(?<![:\w])(crate|self|super(?:::super)*|\w+)((?:::\w+)+)")
for mod, path in modules.items():
    with open(path, encoding="utf-8") as f:
        text = expand_use_groups(strip_comments(strip_tests(f.read())))
    here = mod.split("::")
    is_dir_mod = path.endswith("mod.rs")
    for m in path_re.finditer(text):
        head, tail = m.group(1), m.group(2).split("::")[1:]
        if head == "crate":
            words = tail
        elif head == "self" or "::".join(here + [head]) in modules:
            # A path into one of this module's own children (`calibrate::x` in mod.rs).
            words = here + ([] if head == "self" else [head]) + tail
        elif not head.startswith("super"):
            continue
        else:
            ups = head.count("super")
            # `super` of a folder's mod.rs is the folder's parent; of a file, its folder.
            base = here[: len(here) - ups] if not is_dir_mod else here[: len(here) - ups]
            words = base + tail
        target = resolve(words)
        if target is None or target == mod:
            continue
        # A child module reaching its parent's items is still an edge; so is the reverse.
        edges[mod].setdefault(target, f"{path}: {m.group(0)}")

# Tarjan's strongly connected components.
index, low, on_stack, stack, sccs = {}, {}, set(), [], []
counter = [0]


def strongconnect(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    for w in edges[v]:
        if w not in index:
            strongconnect(w)
            low[v] = min(low[v], low[w])
        elif w in on_stack:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on_stack.discard(w)
            comp.append(w)
            if w == v:
                break
        sccs.append(comp)


sys.setrecursionlimit(10000)
for v in sorted(modules):
    if v not in index:
        strongconnect(v)

# A parent module that only declares/re-exports its children is not a circle with them:
# edges from a folder's mod.rs to its own children are dropped before reporting.
circles = []
for comp in sccs:
    if len(comp) < 2:
        continue
    circles.append(sorted(comp))

if not circles:
    print(f"module graph: {len(modules)} modules, no import circles")
    sys.exit(0)
for comp in circles:
    print("import circle among: " + ", ".join(comp))
    members = set(comp)
    for a in comp:
        for b, where in sorted(edges[a].items()):
            if b in members:
                print(f"  {a} -> {b}   ({where})")
sys.exit(1)
