"""Compare a run with an earlier one: same case, mode, size, device and provider, median against median."""
from __future__ import annotations

from dataclasses import dataclass

from bench.report import OK, Result


@dataclass(frozen=True)
class Change:
    key: tuple[str, str, str, str, str]
    old_ms: float
    new_ms: float

    @property
    def ratio(self) -> float:
        """new / old median time: above 1 is slower."""
        return self.new_ms / self.old_ms

    def describe(self) -> str:
        case, mode, size, device, provider = self.key
        return (f"{case}:{mode} {size} {device}/{provider}: {self.old_ms:.4g} ms -> {self.new_ms:.4g} ms "
                f"({100 * (self.ratio - 1):+.0f}%)")


@dataclass(frozen=True)
class Comparison:
    regressions: list[Change]
    improvements: list[Change]
    unchanged: list[Change]
    lost: list[tuple[str, ...]]     # ok before, not ok now (unavailable, error, mismatch, or missing)

    @property
    def failed(self) -> bool:
        return bool(self.regressions or self.lost)

    def report(self, threshold: float) -> str:
        lines = [f"compared {len(self.regressions) + len(self.improvements) + len(self.unchanged)} rows "
                 f"(threshold {100 * threshold:.0f}% on the median): {len(self.regressions)} regressions, "
                 f"{len(self.improvements)} improvements, {len(self.lost)} no longer measured"]
        lines += [f"  REGRESSION  {c.describe()}" for c in self.regressions]
        lines += [f"  LOST        {':'.join(k[:2])} {' '.join(k[2:])}" for k in self.lost]
        lines += [f"  improved    {c.describe()}" for c in self.improvements]
        return "\n".join(lines)


def compare(old: list[Result], new: list[Result], threshold: float = 0.10) -> Comparison:
    """Rows of ``new`` more than ``threshold`` slower (median) than the same row of ``old`` are regressions.

    Only rows measured in both count; a row measured in ``old`` but unavailable, failing or wrong in
    ``new`` is reported as lost (also a failure). Rows of ``new`` absent from ``old`` are ignored, so a
    run filtered with --cases/--sizes/--providers compares with a full one on what it measured: rows of
    ``old`` outside the filter are not counted as lost.
    """
    new_by_key = {r.key: r for r in new}
    measured_groups = {r.key[:4] for r in new}
    measured_providers = {r.provider for r in new}
    regressions, improvements, unchanged, lost = [], [], [], []
    for o in old:
        if o.status != OK or not o.median_ms:
            continue
        n = new_by_key.get(o.key)
        if n is None:
            if o.key[:4] in measured_groups and o.provider in measured_providers:
                lost.append(o.key)
            continue
        if n.status != OK or not n.median_ms:
            lost.append(o.key)
            continue
        change = Change(o.key, o.median_ms, n.median_ms)
        if change.ratio > 1 + threshold:
            regressions.append(change)
        elif change.ratio < 1 / (1 + threshold):
            improvements.append(change)
        else:
            unchanged.append(change)
    return Comparison(regressions, improvements, unchanged, lost)
