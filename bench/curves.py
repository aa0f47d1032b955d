"""Latency-against-load curves from the sweep runs of bench/run.py: the points of each curve
(median and spread over the repeats) and the check that latency does not fall as load rises.

Pure functions over the run entries of bench/results/<date>.json; tested by test_curves.py.
"""

import statistics

PERCENTILES = (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9"))

# Latency at a lower load worse than at a higher one counts as a regression only when it is worse
# than every repeat at the higher load by this factor and by this much (the repeats' spread is
# the noise; the margin keeps sub-millisecond jitter out).
NOISE_FACTOR = 1.25
NOISE_FLOOR_MS = 0.5


def latency_of(report):
    """The latency summary a sweep point is judged by: pychat's delivery latency for dm, the
    relayed or delivered latency otherwise."""
    return report.get("delivery_latency") or report.get("latency") or {}


def achieved_of(report):
    for key in ("acked_per_sec", "relayed_per_sec", "delivered_per_sec"):
        if report.get(key):
            return report[key]
    return None


def points(entries):
    """Groups a curve's runs by their offered load (`entry["load"]`): one point per load with the
    median, min and max of each percentile over the repeats, the achieved rate, and whether the
    point was below saturation (`entry["below_saturation"]`, set by the sweep)."""
    by_load = {}
    ok = [e for e in entries if not isinstance(e["report"].get("failed"), str)]
    # The saturation repeats (share 100) are one point, at the median of the rates they reached.
    saturation = [e for e in ok if e.get("share") == 100]
    if saturation:
        by_load[statistics.median(e["load"] for e in saturation)] = saturation
    for entry in ok:
        if entry.get("share") != 100:
            by_load.setdefault(entry["load"], []).append(entry)
    result = []
    for load in sorted(by_load):
        runs = by_load[load]
        point = {"load": load, "repeats": len(runs), "share": runs[0].get("share"),
                 "below_saturation": all(r.get("below_saturation", True) for r in runs),
                 "achieved": statistics.median(achieved_of(r["report"]) or 0 for r in runs)}
        for key, _ in PERCENTILES:
            values = [latency_of(r["report"]).get(key) for r in runs]
            values = [v for v in values if v is not None]
            if values:
                point[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
        result.append(point)
    return result


def regressions(curve_points, key="p50_ms"):
    """Pairs of points below saturation where the lower load's latency is worse, beyond the
    noise, than the higher load's: [(lower point, higher point)]."""
    found = []
    usable = [p for p in curve_points if p["below_saturation"] and key in p]
    for i, low in enumerate(usable):
        for high in usable[i + 1:]:
            worst_high = high[key]["max"]
            best_low = low[key]["min"]
            if best_low > worst_high * NOISE_FACTOR and best_low - worst_high > NOISE_FLOOR_MS:
                found.append((low, high))
    return found
