"""Accept pending insta inline snapshots without cargo-insta: rewrites the `@"..."` literal of each
assertion from its `.FILE.rs.pending-snap` (written by a failing run), then deletes that file.
Usage: python3 scripts/accept-inline-snapshots.py src/ir/tests/*.rs passes/tests/*.rs
A test with several assertions stops at the first failure: run and accept until green.
Review the diff like code."""
import json, os, re, sys

def literal_end(src, i):
    # src[i] == '@'; return (start, end) of the string literal after it
    j = i + 1
    if src[j] == 'r':
        k = j + 1
        hashes = 0
        while src[k] == '#':
            hashes += 1; k += 1
        assert src[k] == '"'
        close = '"' + '#' * hashes
        e = src.index(close, k + 1) + len(close)
        return j, e
    assert src[j] == '"', src[j:j+20]
    k = j + 1
    while True:
        if src[k] == '\\': k += 2; continue
        if src[k] == '"': return j, k + 1
        k += 1

for path in sys.argv[1:]:
    d, f = os.path.split(path)
    pend = os.path.join(d, '.' + f + '.pending-snap')
    if not os.path.exists(pend):
        continue
    entries = {}
    for l in open(pend):
        l = l.strip()
        if not l: continue
        e = json.loads(l)
        if e.get('new') is None: continue
        entries[e['line']] = e['new']['snapshot']
    src = open(path).read()
    lines = src.split('\n')
    offs = [0]
    for l in lines: offs.append(offs[-1] + len(l) + 1)
    for line in sorted(entries, reverse=True):
        snap = entries[line]
        start = offs[line - 1]
        at = src.index('@', start)
        # must be a literal after @
        while src[at+1] not in 'r"':
            at = src.index('@', at + 1)
        ls, le = literal_end(src, at)
        indent = re.match(r'\s*', lines[line - 1]).group(0) + '    '
        hashes = '#'
        while ('"' + hashes) in snap: hashes += '#'
        body = '\n'.join((indent + x) if x else '' for x in snap.split('\n'))
        lit = 'r' + hashes + '"\n' + body + '\n' + indent[:-4] + '"' + hashes
        src = src[:ls] + lit + src[le:]
    open(path, 'w').write(src)
    os.remove(pend)
    print('applied', len(entries), 'to', path)
