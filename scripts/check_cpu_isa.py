"""Check that the built genad_fast._C runs on any x86-64: wide instructions only in capability variants.

The CPU kernels are compiled once per capability (CMakeLists.txt, csrc/include/genad/cpu_dispatch.h) and the
variant of the capability in use is called at run time. That is only safe if no AVX2 or AVX-512 instruction leaks
out of its variant: an inline function or template the variants share is kept once by the linker, and if that
copy came from an AVX-512 compilation, an AVX2 machine would die on it with an illegal instruction.

This disassembles the library (objdump, with its symbol table: use the unstripped library of the build folder)
and gives every function the capability its name carries (``AVX512::`` / ``AVX2::`` in a namespace or a template
argument: genad::cpu::AVX2::..., at::vec::AVX2::Vectorized<float>, ...), DEFAULT for every other. Then it follows
the direct calls from each function that is not local to its object file (the ones the linker may have taken from
any compilation): everything reachable from a DEFAULT one must be baseline x86-64 code (no VEX/EVEX instruction),
everything reachable from an AVX2 one free of AVX-512 (zmm or mask registers, xmm16-31/ymm16-31). A local function
(GCC's .isra/.part/.constprop clones of a shared function) may hold wide instructions: it is only reachable from
its own compilation, which these walks check through its callers.

    python scripts/check_cpu_isa.py [path/to/_C.so]     # default: the genad_fast._C that imports

Exits 1 and lists the offending functions (with a sample instruction) when there is a leak; 2 when objdump is
missing or the library is not an x86-64 one.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

FUNC = re.compile(r"^[0-9a-f]+ <(.+)>:$")
AVX512_REG = re.compile(r"%(zmm\d+|k[0-7]\b|[xy]mm(1[6-9]|2\d|3[01])\b)")
VEX_REG = re.compile(r"%ymm\d+")
MARK_512 = re.compile(r"\bAVX512::|6AVX512")  # demangled, or mangled (OpenMP outlined parts)
MARK_2 = re.compile(r"\bAVX2::|4AVX2")


@dataclass
class Function:
    name: str
    local: bool
    capability: str                      # from its name: DEFAULT, AVX2 or AVX512
    widest: str | None = None            # None, "AVX" or "AVX512": its widest instruction
    sample: str = ""                     # an instruction of that width
    calls: set[int] = field(default_factory=set)


@dataclass
class Leak:
    root: str
    allowed: str
    function: str
    found: str
    sample: str


@dataclass
class Report:
    functions: int = 0
    by_capability: dict[str, int] = field(default_factory=lambda: {"DEFAULT": 0, "AVX2": 0, "AVX512": 0})
    leaks: list[Leak] = field(default_factory=list)


LEVEL = {None: 0, "AVX": 1, "AVX512": 2}
ALLOWED = {"DEFAULT": 0, "AVX2": 1, "AVX512": 2}
CALL = re.compile(r"\b(call|jmp)\w*\s+([0-9a-f]+) <")


def library_path() -> str:
    import genad_fast._ext as ext

    if ext._C is None:
        raise SystemExit(f"genad_fast._C is not loaded: {ext.load_error}")
    return ext._C.__file__


def instruction_level(insn: str) -> str | None:
    """'AVX512', 'AVX' (VEX: AVX/AVX2/FMA) or None for one disassembled instruction."""
    if not insn or insn.startswith("("):
        return None
    if AVX512_REG.search(insn):
        return "AVX512"
    mnemonic = insn.split()[0]
    if VEX_REG.search(insn) or (mnemonic.startswith("v") and mnemonic not in ("verr", "verw")):
        return "AVX"
    return None


def capability_of(name: str) -> str:
    return "AVX512" if MARK_512.search(name) else "AVX2" if MARK_2.search(name) else "DEFAULT"


def local_symbols(objdump: str, path: str) -> tuple[set[int], int]:
    """Addresses of the local function symbols, and how many function symbols there are."""
    out = subprocess.run([objdump, "-t", path], capture_output=True, text=True, check=True).stdout
    local, count = set(), 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 6 and "F" in parts[2:4] and ".text" in line:
            count += 1
            if parts[1] == "l":
                local.add(int(parts[0], 16))
    return local, count


def scan(path: str) -> Report:
    objdump = shutil.which("objdump")
    if objdump is None:
        print("objdump not found (binutils)", file=sys.stderr)
        raise SystemExit(2)
    local, n_symbols = local_symbols(objdump, path)
    if n_symbols == 0:
        raise SystemExit(f"{path} has no symbol table (stripped): check the library in the build folder")
    proc = subprocess.Popen([objdump, "-d", "-C", "--no-show-raw-insn", "-j", ".text", path],
                            stdout=subprocess.PIPE, text=True, errors="replace")
    funcs: dict[int, Function] = {}
    cur: Function | None = None
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        m = FUNC.match(line)
        if m:
            addr = int(line.split()[0], 16)
            name = m.group(1)
            cur = funcs[addr] = Function(name, addr in local, capability_of(name))
            continue
        if cur is None:
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        insn = parts[-1].strip()
        level = instruction_level(insn)
        if LEVEL[level] > LEVEL[cur.widest]:
            cur.widest, cur.sample = level, line.strip()
        c = CALL.search(insn)
        if c:
            cur.calls.add(int(c.group(2), 16))
    if proc.wait() != 0:
        raise SystemExit(f"objdump failed on {path}")

    rep = Report(functions=len(funcs))
    for f in funcs.values():
        rep.by_capability[f.capability] += 1
    seen: set[tuple[int, int]] = set()
    for root_addr, root in funcs.items():
        if root.local or root.capability == "AVX512":
            continue
        allowed = ALLOWED[root.capability]
        stack = [root_addr]
        while stack:
            addr = stack.pop()
            if (addr, allowed) in seen or addr not in funcs:
                continue
            seen.add((addr, allowed))
            f = funcs[addr]
            if LEVEL[f.widest] > allowed or ALLOWED[f.capability] > allowed:
                rep.leaks.append(Leak(root.name, root.capability, f.name, f.widest or f.capability, f.sample))
                continue
            stack.extend(a for a in f.calls if a != addr)
    return rep


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("library", nargs="?", help="the built extension (default: genad_fast._C)")
    args = ap.parse_args()
    path = args.library or library_path()
    with open(path, "rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF" or int.from_bytes(head[18:20], "little") != 62:  # EM_X86_64
        print(f"{path}: not an x86-64 ELF library; nothing to check")
        return 2
    rep = scan(path)
    caps = ", ".join(f"{k} {v}" for k, v in rep.by_capability.items())
    if rep.leaks:
        print(f"{path}: {len(rep.leaks)} function(s) with instructions beyond the capability of the code that calls them "
              f"({rep.functions} functions: {caps}):")
        for leak in rep.leaks[:50]:
            via = "" if leak.root == leak.function else f"\n      reached from {leak.root}"
            print(f"  [{leak.found} in {leak.allowed} code] {leak.function}{via}\n      {leak.sample}")
        return 1
    print(f"{path}: ok, {rep.functions} functions ({caps}); no AVX outside the AVX2/AVX512 variants, "
          f"no AVX-512 outside the AVX512 ones")
    return 0


if __name__ == "__main__":
    sys.exit(main())
