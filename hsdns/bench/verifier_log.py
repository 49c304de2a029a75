#!/usr/bin/env python3
"""Where the verifier's processed instructions go, from its log.

The verifier walks every path; its cost is the number of states it walks
the rest of the program in. This reads the log of one program and prints
the processed instructions per source file, per source line and per
branch (the instructions walked on the paths the verifier took from that
branch's other side: a branch that shows up with a whole loop or the whole
rewrite behind it, many times, is where the states multiply), and the
instructions visited most often.

With `--states N`: the registers and stack slots that differ between the
full states the log printed at instruction N (e.g. a loop's first
instruction): the values that keep the verifier from pruning there. A
constant that differs (a flag, a verdict) and is live further on is what
`verifier::merge` is for.

The log (about 200 MB for 87k processed instructions; as root):
    hsdns/bench/profile_kernel.sh   # or any build of the object
    bpftool -d prog loadall /tmp/hsdns-profile/full.o /sys/fs/bpf/vlog > vlog.txt 2>&1
    rm -r /sys/fs/bpf/vlog
    hsdns/bench/verifier_log.py vlog.txt hsdns [--states 497 [R3=0]]
(`hsdns` is the XDP entry point, `hsdns_tc` the tc one.)
"""
import collections
import re
import sys

INSN = re.compile(r'^(\d+): \(([0-9a-f]{2})\) (.*)')
SRC = re.compile(r'^; (.*) @ (\S+):(\d+)$')
POP = re.compile(r'^from (\d+) to (\d+):')


def program_lines(path, prog):
    inside = False
    with open(path, errors='replace') as f:
        for line in f:
            if not inside:
                inside = line.startswith(f"libbpf: prog '{prog}': -- BEGIN")
                continue
            if line.startswith('-- END PROG LOAD LOG'):
                return
            yield line.rstrip('\n')


def tokens(s):
    """`R1=scalar(a=1,b=(2; 3)) fp-8=...` as a dict, ids dropped."""
    out, i = {}, 0
    while i < len(s):
        while i < len(s) and s[i] == ' ':
            i += 1
        j, depth = i, 0
        while j < len(s) and (s[j] != ' ' or depth):
            depth += {'(': 1, ')': -1}.get(s[j], 0)
            j += 1
        t, i = s[i:j], j
        if '=' in t:
            k, v = t.split('=', 1)
            out[k] = re.sub(r'id=\d+([-+]\d+)?,?', '', v)
    return out


def states(path, prog, at, filters):
    full = re.compile(r'^' + at + r': (R\d+=.*)$')
    found = []
    for line in program_lines(path, prog):
        m = full.match(line)
        if not m:
            continue
        t = tokens(m.group(1))
        if len(t) < 8:  # only the registers an instruction changed
            continue
        if all(t.get(k) == v for k, v in (f.split('=', 1) for f in filters)):
            found.append(t)
    print(f'{len(found)} full states at {at} {filters}')
    for k in sorted({k for s in found for k in s}):
        vals = collections.Counter(s.get(k, '-') for s in found)
        if len(vals) > 1:
            print(f'  {k}: {dict(vals)}')


def costs(path, prog, top):
    count = collections.Counter()
    line_of, text = {}, {}
    by_branch, pops = collections.Counter(), collections.Counter()
    branch, pending = ('entry',), None
    for line in program_lines(path, prog):
        m = INSN.match(line)
        if m:
            n = int(m.group(1))
            count[n] += 1
            by_branch[branch] += 1
            text[n] = m.group(3).split(';')[0].strip()
            if pending:
                line_of.setdefault(n, pending)
                pending = None
            continue
        m = SRC.match(line)
        if m:
            pending = (m.group(2), int(m.group(3)), m.group(1)[:70])
            continue
        m = POP.match(line)
        if m:
            branch = (int(m.group(1)), int(m.group(2)))
            pops[branch] += 1
    # A line's info holds until the next instruction that has one.
    where, last = {}, None
    for n in range(max(count) + 1):
        last = line_of.get(n, last)
        where[n] = last or ('?', 0, '')
    src = {(f, n): t for f, n, t in line_of.values()}
    print(f'{prog}: {sum(count.values()) + sum(pops.values())} processed '
          f'({len(count)} distinct instructions, {sum(pops.values())} branch pops)')
    by_file, by_line = collections.Counter(), collections.Counter()
    for n, c in count.items():
        f, ln, _ = where[n]
        by_file[f] += c
        by_line[(f, ln)] += c
    print('\nper file')
    for f, c in by_file.most_common(top):
        print(f'{c:8d}  {f}')
    print('\nper source line')
    for (f, ln), c in by_line.most_common(top):
        print(f'{c:8d}  {f}:{ln}  {src.get((f, ln), "")}')
    print('\nper branch: instructions walked from its other side, times taken')
    for b, c in by_branch.most_common(top):
        if b == ('entry',):
            print(f'{c:8d}  (from the entry)')
            continue
        f, ln, t = where[b[0]]
        print(f'{c:8d}  x{pops[b]:<5d} {b[0]} -> {b[1]}  {f}:{ln}  {t}  | {text.get(b[0], "")}')
    print('\nmost visited instructions')
    for n, c in count.most_common(top // 2):
        f, ln, _ = where[n]
        print(f'{c:8d}  {n}: {text[n]}  ({f}:{ln})')


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    path, prog = args[0], args[1]
    if len(args) > 3 and args[2] == '--states':
        states(path, prog, args[3], args[4:])
    else:
        costs(path, prog, 40)


if __name__ == '__main__':
    main()
