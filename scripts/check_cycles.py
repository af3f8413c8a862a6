#!/usr/bin/env python3
"""Checks that no two modules of a crate depend on each other, directly or through others.

For every crate of the workspace (the root crate's src/ and each crates/*/src/) the module tree
is read from `mod NAME;` declarations (NAME.rs or NAME/mod.rs, nested folders included), and a
module depends on every module its source names: `use crate::a::b::...`, `crate::a::b::f(...)`
written inline, `super::`/`self::` paths, and paths through a name a `use` brought in. A path
counts against the deepest module it names (`crate::a::b::Z` is module `a::b` if that exists,
else `a`). Not counted: the crate root (lib.rs/main.rs, which declares everything), test code
(tests.rs, tests/ folders, `mod tests {}` and any `#[cfg(test)]` item), comments and strings,
a module's use of itself, and a parent declaring or re-exporting (`pub use child::X`) its
children; a path through such a re-export counts against the child it comes from.

Every cycle (strongly connected component of more than one module) is printed with its edges
and the names that tie them, and the exit status is 1. Otherwise it prints
`no module cycles in N modules of M crates` and exits 0. `--self-test` runs the check on a
small made-up crate with one known cycle and one known non-cycle.
"""
import re
import sys
import tempfile
from pathlib import Path

NOISE = re.compile(r'//[^\n]*|/\*.*?\*/|r(#*)".*?"\1|b?"(?:\\.|[^"\\])*"|b?\'(?:\\.|[^\'\\])\'', re.S)
TEST_ITEM = re.compile(r'#\[cfg\(test\)\]|\bmod\s+tests\s*\{')
INLINE_MOD = re.compile(r'\b(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*\{')
MOD_DECL = re.compile(r'\bmod\s+(\w+)\s*;')
USE = re.compile(r'\b(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);')
PATH = re.compile(r'\b\w+(?:\s*::\s*\w+)+')


def block_end(text, open_at):
    """Index just past the brace block that opens at text[open_at] == '{'."""
    depth = 0
    for i in range(open_at, len(text)):
        depth += {'{': 1, '}': -1}.get(text[i], 0)
        if depth == 0:
            return i + 1
    return len(text)


def cut_items(text, pattern):
    """`text` without each match of `pattern` and the item it starts (to a `;` or past a `{}` block)."""
    while m := pattern.search(text):
        stop = re.compile(r'[;{]').search(text, m.end() - 1)
        end = len(text) if not stop else stop.end() if stop.group() == ';' else block_end(text, stop.start())
        text = text[:m.start()] + ' ' + text[end:]
    return text


def inline_bodies(module, text):
    """(module path, text outside nested inline modules) of a file and of each inline module in it."""
    yield module, cut_items(text, INLINE_MOD)
    pos = 0
    while m := INLINE_MOD.search(text, pos):
        pos = block_end(text, m.end() - 1)
        yield from inline_bodies(module + (m.group(1),), text[m.end():pos - 1])


def split_use(tree, prefix=()):
    """(path, alias) pairs of a use tree such as `a::{b, c::d as e, self}`."""
    m = re.match(r'^((?:\w+\s*::\s*)*)\{(.*)\}$', tree.strip(), re.S)
    if not m:
        path, _, alias = tree.partition(' as ')
        segs = prefix + tuple(s.strip() for s in path.split('::'))
        segs = segs[:-1] if segs[-1] == 'self' else segs
        return [(segs, None if segs[-1] == '*' else (alias.strip() or segs[-1]))]
    base = prefix + tuple(s.strip() for s in m.group(1).split('::') if s.strip())
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(m.group(2) + ','):
        depth += {'{': 1, '}': -1}.get(ch, 0)
        if ch == ',' and depth == 0:
            parts.append(m.group(2)[start:i])
            start = i + 1
    return [pair for part in parts if part.strip() for pair in split_use(part, base)]


def below(path, module):
    return len(path) > len(module) and path[:len(module)] == module


class Crate:
    def __init__(self, name, src):
        self.name, self.files, self.reexports = name, {(): ''}, {}  # () is the crate root
        for root in ('lib.rs', 'main.rs'):
            if (Path(src) / root).exists():
                self.load((), Path(src) / root, Path(src))

    def load(self, module, file, folder):
        text = cut_items(NOISE.sub(' ', file.read_text(encoding='utf-8')), TEST_ITEM)
        self.files[module] = self.files.get(module, '') + text
        for name in MOD_DECL.findall(cut_items(text, INLINE_MOD)):
            for child in (folder / f'{name}.rs', folder / name / 'mod.rs'):
                if name != 'tests' and child.exists():
                    self.load(module + (name,), child, folder / name)

    def module_of(self, path):
        """(deepest module named by absolute `path`, through re-exports, and the name after it)."""
        for _ in range(10):
            depth = max(d for d in range(len(path) + 1) if path[:d] in self.files)
            module, rest = path[:depth], path[depth:]
            target = self.reexports.get(module, {}).get(rest[0]) if rest else None
            if not target:
                break
            path = target + rest[1:]
        return module, rest[0] if rest else module[-1] if module else ''

    def resolve(self, segs, here, aliases):
        """Absolute path of `segs` written in module `here` (None for another crate's)."""
        if segs[0] == 'crate':
            return segs[1:]
        if segs[0] in ('self', 'super'):
            while segs[0] in ('self', 'super'):
                here, segs = (here[:-1] if segs[0] == 'super' else here), segs[1:]
            return here + segs
        if segs[0] in aliases:
            return aliases[segs[0]] + segs[1:]
        return here + segs if here + segs[:1] in self.files else None

    def edges(self):
        """{(from, to): {names}} over the modules of the crate."""
        uses = {}  # (module, inline module) -> [(pub, path, alias)]
        for module, text in self.files.items():
            for inline, body in inline_bodies(module, text):
                for m, (segs, alias) in ((m, pair) for m in USE.finditer(body) for pair in split_use(m.group(2))):
                    uses.setdefault((module, inline), []).append((bool(m.group(1)), segs, alias))
                    target = self.resolve(segs, inline, {})
                    if m.group(1) and alias and target and below(target, module):
                        self.reexports.setdefault(module, {})[alias] = target
        found = {}
        for module, text in self.files.items():
            for inline, body in inline_bodies(module, text) if module else ():  # the root: re-exports only
                aliases, paths = {}, []
                for public, segs, alias in uses.get((module, inline), []):
                    target = self.resolve(segs, inline, aliases)
                    if alias and target:
                        aliases[alias] = target
                    if target and not (public and below(target, module)):
                        paths.append(target)
                for m in PATH.finditer(USE.sub(' ', body)):
                    paths.append(self.resolve(tuple(re.split(r'\s*::\s*', m.group())), inline, aliases))
                for to, name in (self.module_of(path) for path in paths if path):
                    if to and to != module:
                        found.setdefault((module, to), set()).add(name)
        return found


def cycles(edges):
    """Strongly connected components of more than one module, as sorted lists."""
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    reach = {}
    for start in graph:
        seen, todo = set(), [start]
        while todo:
            new = graph.get(todo.pop(), set()) - seen
            seen |= new
            todo.extend(new)
        reach[start] = seen
    return sorted({tuple(sorted(w for w in reach[v] if v in reach.get(w, ()))) for v in graph if v in reach[v]})


def check(crates, out=print):
    """Prints every cycle of `crates`; returns [(crate, [module names])]."""
    found = []
    for crate in crates:
        edges = crate.edges()
        for component in cycles(edges):
            found.append((crate.name, ['::'.join(m) for m in component]))
            out(f'{crate.name}: module cycle among {", ".join(found[-1][1])}')
            for (a, b), tied in sorted(edges.items()):
                if a in component and b in component:
                    out(f'    {"::".join(a)} -> {"::".join(b)}  ({", ".join(sorted(tied))})')
    if not found:
        out(f'no module cycles in {sum(len(c.files) - 1 for c in crates)} modules of {len(crates)} crates')
    return found


def self_test():
    files = {
        'lib.rs': 'mod a; mod b; mod c; mod d; mod e; mod g;',
        'a.rs': 'pub fn g() { crate::b::f(); }',
        'b.rs': 'use super::a::g;\npub fn f() {}',
        'c.rs': 'use crate::{d, e::Thing, g};\npub fn k() { d::h(); g::w::x(); }',
        'd.rs': '// crate::c::k\nconst S: &str = "crate::c::k";\npub fn h() {}\n'
                '#[cfg(test)]\nmod tests { use crate::c::k; }\nmod inner { use super::super::e::helper; }',
        'e/mod.rs': 'pub mod f;\npub use f::Thing;\npub fn helper() {}',
        'e/f.rs': 'pub struct Thing;\nfn x() { super::helper(); }',
        'g.rs': 'pub mod w;',
        'g/w.rs': 'pub fn x() {}',
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / name).write_text(text)
        crate, lines = Crate('selftest', tmp), []
        found = check([crate], out=lines.append)
        edges = {('::'.join(a), '::'.join(b)) for a, b in crate.edges()}
    want = {('a', 'b'), ('b', 'a'), ('c', 'd'), ('c', 'e::f'), ('c', 'g'), ('c', 'g::w'), ('d', 'e'), ('e::f', 'e')}
    ok = found == [('selftest', ['a', 'b'])] and edges == want
    print('\n'.join(lines))
    print('self-test passed' if ok else f'self-test FAILED: cycles {found}, edges {sorted(edges)}')
    return 0 if ok else 1


if __name__ == '__main__':
    if '--self-test' in sys.argv[1:]:
        sys.exit(self_test())
    root = Path(__file__).resolve().parent.parent
    crates = [Crate('doctrove_embed (src/)', root / 'src')] + [Crate(p.parent.name, p) for p in sorted(root.glob('crates/*/src'))]
    sys.exit(1 if check(crates) else 0)
