#!/usr/bin/env python3
"""Fails when modules of a crate import each other in a cycle.

Every module file of a crate (src/a.rs or src/a/mod.rs is `a`, src/a/b.rs
is `a::b`) is a node; a path to another module (`crate::a::b::Item`,
`crate::{a, b}`, `super::c`, `self::d`) is an edge to the longest module
that path names. A module using its own ancestors or descendants (a parent
re-exporting a child, a child using its parent's types) is how Rust crates
are laid out and is not counted; a cycle among the rest (siblings, cousins)
is printed and the exit code is 1. Tests and comments are left out.

Run from the repository root: python3 scripts/check_module_cycles.py
"""
import os
import re
import sys

CRATES = ["cluster", "protocol", "chat-node", "operator", "bench", "system-tests"]


def strip(src: str) -> str:
    src = re.sub(r"#\[cfg\(test\)\]\s*mod tests\s*\{.*", "", src, flags=re.S)
    src = re.sub(r"//[^\n]*", "", src)
    return src


def module_of(rel: str) -> tuple:
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def paths(src: str) -> list:
    """Every `root::a::b` path, with `root::{x::y, z}` groups expanded."""
    out = []
    for m in re.finditer(r"\b(crate|super|self)((?:::\w+)*)(::\{)?", src):
        root, rest, group = m.group(1), m.group(2), m.group(3)
        base = [root] + [p for p in rest.split("::") if p]
        if not group:
            out.append(base)
            continue
        depth, i, item = 1, m.end(), ""
        items = []
        while i < len(src) and depth:
            c = src[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            if depth == 1 and c == ",":
                items.append(item)
                item = ""
            elif depth >= 1 and not (depth == 1 and c == "}"):
                item += c
            i += 1
        items.append(item)
        for it in items:
            # `x::y::{..}` or `x as z`: the path before any group or alias.
            words = re.findall(r"\w+", it.split("{")[0].split(" as ")[0])
            if words:
                out.append(base + words)
    return out


def resolve(path: list, here: tuple, modules: set):
    root, rest = path[0], path[1:]
    if root == "crate":
        base = ()
    elif root == "self":
        base = here
    else:  # super: the parent of this module
        base = here[:-1]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    best = None
    for n in range(len(rest), -1, -1):
        cand = base + tuple(rest[:n])
        if cand in modules:
            best = cand
            break
    return best


def graph(root: str) -> dict:
    files = {}
    for dirpath, _, names in os.walk(root):
        for f in names:
            if f.endswith(".rs"):
                rel = os.path.relpath(os.path.join(dirpath, f), root)
                if rel.split(os.sep)[0] == "bin":
                    continue
                files[rel] = module_of(rel)
    modules = set(files.values())
    g = {m: set() for m in modules}
    for rel, here in files.items():
        with open(os.path.join(root, rel), encoding="utf-8") as fh:
            src = strip(fh.read())
        for p in paths(src):
            target = resolve(p, here, modules)
            if target is None or target == here:
                continue
            related = target[: len(here)] == here or here[: len(target)] == target
            if not related:
                g[here].add(target)
    return g


def cycles(g: dict) -> list:
    found, state = [], {}

    def visit(n, path):
        state[n] = 1
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                found.append(path[path.index(m):] + [m])
            elif m not in state:
                visit(m, path + [m])
        state[n] = 2

    for n in sorted(g):
        if n not in state:
            visit(n, [n])
    return found


def name(m: tuple) -> str:
    return "::".join(m) or "crate"


def main() -> int:
    bad = 0
    for crate in CRATES:
        src = os.path.join(crate, "src")
        if not os.path.isdir(src):
            continue
        for c in cycles(graph(src)):
            print(f"{crate}: import cycle {' -> '.join(name(m) for m in c)}")
            bad += 1
    if bad == 0:
        print("no import cycles between modules")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
