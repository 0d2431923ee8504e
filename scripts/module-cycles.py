#!/usr/bin/env python3
"""Import cycles between the library's files (src/ and passes/), test code left out.

Usage: scripts/module-cycles.py [-v]   (from the repository root; exit 1 when there is a cycle)

Each file is a module (src/a/b.rs is crate::a::b, src/a/mod.rs is crate::a, passes/ is
crate::passes through lib.rs's #[path]). An edge A -> B means that code in A names an item that
B defines: every path in `use` lines and in code (`crate::x::Y`, `super::Y`, `sibling::f`) and
every bare name that reaches A through a glob import (`use super::*`) is resolved through the
re-exports (`pub use`) to the file that defines it. `mod` declarations are not edges; comments,
strings and `#[cfg(test)]` code (test modules, and inline `mod tests { .. }`) are left out.
The script prints each strongly connected component of more than one file (a cycle) and, with
-v, every edge. It is a reader of the source, not a compiler: macros and trait methods are not
followed, which can only hide an edge made solely through them.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITEM = re.compile(
    r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:unsafe\s+|async\s+|const\s+|extern\s+\"C\"\s+)*"
    r"(fn|struct|enum|trait|type|const|static|mod|union)\s+(\w+)",
    re.M,
)
MACRO = re.compile(r"macro_rules!\s*(\w+)")
MODDECL = re.compile(r'((?:#\[[^\]]*\]\s*)*)(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;')
USE = re.compile(r"\b(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);")
PATH = re.compile(r"\b((?:crate|super|self|[A-Za-z_]\w*)(?:::(?:[A-Za-z_]\w*|\*))+)")
IDENT = re.compile(r"\b[A-Za-z_]\w*\b")


def strip(src):
    """Source without comments, string/char literals and #[cfg(test)] inline modules."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', src[i:i + 10]) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            m = re.match(r'r(#*)"', src[i:])
            end = src.find('"' + m.group(1), i + len(m.group(0)))
            out.append('""')
            i = n if end < 0 else end + 1 + len(m.group(1))
        elif c == '"':
            i += 1
            while i < n and src[i] != '"':
                i += 2 if src[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'" and re.match(r"'(\\.[^']*|[^\\'])'", src[i:i + 12]):
            m = re.match(r"'(\\.[^']*|[^\\'])'", src[i:])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    text = "".join(out)
    # #[cfg(test)] mod NAME { ... }: cut the block.
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{", text)
        if not m:
            return text
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        text = text[: m.start()] + text[j:]


def split_use(tree, prefix=()):
    """`a::{b, c::d as e, f::*}` -> [(local name or '*', path tuple)]."""
    tree = tree.strip()
    out = []
    m = re.match(r"^(.*?)::\{(.*)\}$", tree, re.S) or re.match(r"^()\{(.*)\}$", tree, re.S)
    if m:
        head = tuple(p for p in m.group(1).split("::") if p) if m.group(1) else ()
        depth, cur, parts = 0, "", []
        for ch in m.group(2):
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
                continue
            depth += {"{": 1, "}": -1}.get(ch, 0)
            cur += ch
        parts.append(cur)
        for p in parts:
            if p.strip():
                out += split_use(p, prefix + head)
        return out
    alias = None
    if " as " in tree:
        tree, alias = [x.strip() for x in tree.split(" as ")]
    path = prefix + tuple(p.strip() for p in tree.split("::") if p.strip())
    if path[-1] == "*":
        return [("*", path[:-1])]
    if path[-1] == "self":
        path = path[:-1]
    return [(alias or path[-1], path)] if path else []


class Module:
    def __init__(self, name, file, test):
        self.name, self.file, self.test = name, file, test
        self.children, self.items, self.imports, self.globs = {}, set(), {}, []
        self.text = ""


def load():
    mods = {}

    def visit(name, file, test):
        m = Module(name, file, test)
        mods[name] = m
        raw = open(file, encoding="utf-8").read()
        # Module declarations come from the raw text (a #[path] attribute is a string).
        for attrs, child in MODDECL.findall(raw):
            p = re.search(r'#\[path\s*=\s*"([^"]+)"\]', attrs)
            base = os.path.dirname(file)
            if not (file.endswith("mod.rs") or file.endswith("lib.rs")):
                base = os.path.join(base, os.path.basename(file)[:-3])
            if p:
                cf = os.path.normpath(os.path.join(os.path.dirname(file), p.group(1)))
            else:
                cf = os.path.join(base, child + ".rs")
                if not os.path.exists(cf):
                    cf = os.path.join(base, child, "mod.rs")
            if os.path.exists(cf):
                m.children[child] = name + (child,)
                visit(name + (child,), cf, test or "cfg(test)" in attrs)
        m.text = strip(raw)
        m.items = {x for _, x in ITEM.findall(m.text)} | set(MACRO.findall(m.text))
        for _, tree in USE.findall(m.text):
            for local, path in split_use(tree):
                if local == "*":
                    m.globs.append(path)
                else:
                    m.imports[local] = path

    visit(("crate",), os.path.join(ROOT, "src", "lib.rs"), False)
    return mods


def resolve(mods, ctx, path, seen=None):
    """The module defining what `path` names from module `ctx`, or None (external/unknown)."""
    seen = seen or set()
    key = (ctx, path)
    if key in seen or not path:
        return None
    seen.add(key)
    head, rest = path[0], path[1:]
    if head == "crate":
        return walk(mods, ("crate",), rest, seen)
    if head == "self":
        return walk(mods, ctx, rest, seen)
    if head == "super":
        return walk(mods, ctx[:-1], rest, seen) if len(ctx) > 1 else None
    return walk(mods, ctx, path, seen)


def walk(mods, at, segs, seen):
    """Resolve `segs` starting inside module `at`."""
    if not segs:
        return at
    if segs == ("self",):
        return at
    m = mods.get(at)
    if m is None:
        return None
    s, rest = segs[0], segs[1:]
    if s == "super":
        return walk(mods, at[:-1], rest, seen)
    if s in m.children:
        return walk(mods, m.children[s], rest, seen)
    if s in m.items:
        return at
    if s in m.imports:
        t = resolve(mods, at, m.imports[s], seen)
        if t is None:
            return None
        return walk(mods, t, rest, seen) if t != at and rest and rest[0] in mods.get(t, Module(0, 0, 0)).children else t
    for g in m.globs:
        t = resolve(mods, at, g, seen)
        if t and t != at and (s in mods[t].items or s in mods[t].children or s in mods[t].imports):
            return walk(mods, t, segs, seen)
    return None


def edges(mods):
    out = {}
    for name, m in mods.items():
        if m.test:
            continue
        deps = set()
        code = USE.sub(" ", m.text)
        paths = [p for _, tree in USE.findall(m.text) for l, p in split_use(tree) if l != "*"]
        paths += [tuple(p.split("::")) for p in PATH.findall(code)]
        names = set(IDENT.findall(code)) - m.items - set(m.imports) - set(m.children)
        paths += [(n,) for n in names] if m.globs else []
        for p in paths:
            p = tuple(x for x in p if x != "*")
            t = resolve(mods, name, p)
            if t and t != name and not mods[t].test and names_item(mods, name, p):
                deps.add(t)
        out[name] = deps
    return out


def names_item(mods, ctx, path):
    """Whether `path` names an item, not only a module (`use crate::io;` is no edge by itself:
    the paths through it are)."""
    for k in range(len(path), 0, -1):
        t = resolve(mods, ctx, path[:k])
        if t is not None:
            whole = resolve(mods, ctx, path)
            return not (k == len(path) and is_module_path(mods, ctx, path))
    return False


def is_module_path(mods, ctx, path):
    """Whether `path` from `ctx` names a module (not an item defined in one)."""
    if path[-1] in ("crate", "super", "self"):
        return True
    parent = resolve(mods, ctx, path[:-1]) if len(path) > 1 else ctx
    if parent is None:
        return False
    m = mods[parent]
    if path[-1] in m.children:
        return True
    if path[-1] in m.items:
        return False
    if path[-1] in m.imports:
        return is_module_path(mods, parent, m.imports[path[-1]])
    return False


def sccs(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
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
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            strong(v)
    return out


def main():
    mods = load()
    graph = edges(mods)
    rel = lambda n: os.path.relpath(mods[n].file, ROOT)
    if "-v" in sys.argv:
        for v in sorted(graph):
            for w in sorted(graph[v]):
                print(f"{rel(v)} -> {rel(w)}")
    cycles = [sorted(c) for c in sccs(graph) if len(c) > 1]
    for c in cycles:
        files = {n: rel(n) for n in c}
        print(f"cycle of {len(c)} files:")
        for n in c:
            inside = sorted(files[w] for w in graph[n] if w in files)
            print(f"  {files[n]} -> {', '.join(inside)}")
    print(f"{len(graph)} files, {sum(map(len, graph.values()))} edges, {len(cycles)} cycle(s)")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
