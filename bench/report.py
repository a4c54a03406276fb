"""Result rows, and their CSV, JSON, table and plot forms."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

OK, UNAVAILABLE, ERROR, MISMATCH = "ok", "unavailable", "error", "mismatch"


@dataclass
class Result:
    case: str
    mode: str
    size: str
    device: str
    provider: str
    status: str                             # ok | unavailable | error | mismatch (timed, but wrong output)
    median_ms: float | None = None
    p20_ms: float | None = None
    p80_ms: float | None = None
    repeats: int | None = None
    throughput: float | None = None         # items per second, in throughput_unit
    throughput_unit: str = ""
    gb_per_s: float | None = None           # bytes_moved / median (memory-bound cases)
    bw_fraction: float | None = None        # gb_per_s / copy bandwidth of the same device, same run
    speedup_vs_eager: float | None = None   # eager median / this median (same case, size, device)
    speedup_vs_compile: float | None = None
    compile_s: float | None = None          # compile provider: seconds of its first (compiling) call
    first_call_s: float | None = None
    others_cpu: float | None = None         # share of all cpus other processes used while this was timed
    note: str = ""                          # why unavailable, the error, or the mismatch

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.case, self.mode, self.size, self.device, self.provider)


FIELDS = [f.name for f in fields(Result)]
_INT_FIELDS = {"repeats"}
_STR_FIELDS = {"case", "mode", "size", "device", "provider", "status", "throughput_unit", "note"}


def add_speedups(rows: list[Result], references: dict[str, str] | None = None) -> None:
    """Fill speedup_vs_eager / speedup_vs_compile from the eager and compile rows of the same group; a case named
    in ``references`` counts speed-ups against its own reference provider there instead of eager (the
    many-series cases: against the Python loop)."""
    references = references or {}
    base: dict[tuple[str, str, str, str, str], float] = {}
    for r in rows:
        if r.provider in ("eager", "compile", references.get(r.case)) and r.status == OK and r.median_ms:
            base[(r.case, r.mode, r.size, r.device, r.provider)] = r.median_ms
    for r in rows:
        if r.status not in (OK, MISMATCH) or not r.median_ms:
            continue
        group = (r.case, r.mode, r.size, r.device)
        eager, comp = base.get(group + (references.get(r.case, "eager"),)), base.get(group + ("compile",))
        r.speedup_vs_eager = eager / r.median_ms if eager else None
        r.speedup_vs_compile = comp / r.median_ms if comp else None


# --- files ---------------------------------------------------------------------------------------

def _flat_meta(meta: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for k, v in meta.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.extend(_flat_meta(v, name + "."))
        else:
            out.append((name, json.dumps(v) if isinstance(v, (list, tuple)) else str(v)))
    return out


def write_csv(path: Path, rows: list[Result], meta: dict[str, Any]) -> None:
    """Rows as CSV, preceded by ``# key: value`` lines of metadata (pandas: ``comment='#'``)."""
    with open(path, "w", newline="") as f:
        f.write("# genad_fast benchmark results\n")
        for k, v in _flat_meta(meta):
            f.write(f"# {k}: {v}\n".replace("\r", " "))
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in asdict(r).items()})


def write_json(path: Path, rows: list[Result], meta: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump({"meta": meta, "fields": FIELDS, "rows": [asdict(r) for r in rows]}, f, indent=1)
        f.write("\n")


def _parse(name: str, text: str) -> Any:
    if name in _STR_FIELDS:
        return text
    if text == "":
        return None
    return int(text) if name in _INT_FIELDS else float(text)


def read_csv(path: Path | str) -> tuple[list[Result], dict[str, str]]:
    """Rows and the metadata lines of a CSV written by :func:`write_csv`."""
    meta: dict[str, str] = {}
    lines = []
    with open(path, newline="") as f:
        for line in f:
            if line.startswith("#"):
                k, sep, v = line[1:].strip().partition(": ")
                if sep:
                    meta[k] = v
            else:
                lines.append(line)
    reader = csv.DictReader(lines)
    missing = {"case", "mode", "size", "device", "provider", "status", "median_ms"} - set(reader.fieldnames or [])
    if missing:
        raise ValueError(f"{path}: not a benchmark CSV (missing columns: {', '.join(sorted(missing))})")
    rows = [Result(**{k: _parse(k, v) for k, v in rec.items() if k in FIELDS}) for rec in reader]
    return rows, meta


# --- table ---------------------------------------------------------------------------------------

def _si(x: float | None, unit: str) -> str:
    if x is None or not math.isfinite(x):
        return ""
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def _num(x: float | None, fmt: str) -> str:
    return "" if x is None else format(x, fmt)


def format_table(rows: list[Result]) -> str:
    head = ["case", "mode", "size", "dev", "provider", "median ms", "p20-p80 ms", "throughput",
            "GB/s", "bw", "x eager", "x compile", "compile s", "others", "status"]
    body = []
    notes: dict[str, int] = {}          # long reasons go below the table, numbered
    for r in rows:
        spread = f"{r.p20_ms:.4g}-{r.p80_ms:.4g}" if r.p20_ms is not None and r.p80_ms is not None else ""
        status = r.status
        if r.note:
            status += f" [{notes.setdefault(r.note, len(notes) + 1)}]"
        body.append([r.case, r.mode, r.size, r.device, r.provider, _num(r.median_ms, ".4g"), spread,
                     _si(r.throughput, r.throughput_unit), _num(r.gb_per_s, ".3g"),
                     "" if r.bw_fraction is None else f"{100 * r.bw_fraction:.0f}%",
                     _num(r.speedup_vs_eager, ".2f"), _num(r.speedup_vs_compile, ".2f"),
                     _num(r.compile_s, ".1f"),
                     "" if r.others_cpu is None else f"{100 * r.others_cpu:.0f}%", status])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    fmt_row = lambda cells: "  ".join(  # noqa: E731
        c if i == len(cells) - 1 else c.ljust(widths[i]) for i, c in enumerate(cells))
    lines = [fmt_row(head), fmt_row(["-" * w for w in widths])]
    lines += [fmt_row(b) for b in body]
    lines += [f"[{i}] {note}" for note, i in notes.items()]
    return "\n".join(lines)


# --- plot ----------------------------------------------------------------------------------------

def plot_speedups(path: Path, rows: list[Result], title: str = "") -> bool:
    """Bars of speed-up over eager and over compile per case/size; False when nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in rows if r.status in (OK, MISMATCH) and r.provider != "eager"]
    groups = list(dict.fromkeys(f"{r.case}:{r.mode}\n{r.size} {r.device}" for r in timed))
    providers = [p for p in dict.fromkeys(r.provider for r in timed)]
    if not groups:
        return False
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 1.1 * len(groups) + 2), 7.5), sharex=True)
    width = 0.8 / max(len(providers), 1)
    for ax, attr, label in ((axes[0], "speedup_vs_eager", "speed-up over eager"),
                            (axes[1], "speedup_vs_compile", "speed-up over torch.compile")):
        for j, p in enumerate(providers):
            if attr == "speedup_vs_compile" and p == "compile":
                continue                    # 1 by definition
            xs, ys = [], []
            for i, g in enumerate(groups):
                for r in timed:
                    if r.provider == p and f"{r.case}:{r.mode}\n{r.size} {r.device}" == g:
                        v = getattr(r, attr)
                        if v:
                            xs.append(i + (j - (len(providers) - 1) / 2) * width)
                            ys.append(v)
            if xs:
                bars = ax.bar(xs, ys, width=width, label=p)
                ax.bar_label(bars, fmt="%.2g", fontsize=7)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_ylabel(label)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[1].set_xticks(range(len(groups)))
    axes[1].set_xticklabels(groups, fontsize=7, rotation=30, ha="right")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
