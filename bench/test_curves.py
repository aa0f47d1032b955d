"""python3 -m unittest bench/test_curves.py (part of bench/smoke.sh)."""

import pathlib
import sys
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import curves  # noqa: E402


def run(load, p50, p99=None, below=True, failed=False):
    report = {"failed": "boom"} if failed else {
        "acked_per_sec": load, "delivery_latency": {"p50_ms": p50, "p99_ms": p99 or p50 * 2, "p999_ms": p50 * 3}}
    return {"load": load, "share": None, "below_saturation": below, "report": report}


class Points(unittest.TestCase):
    def test_repeats_give_median_and_spread(self):
        pts = curves.points([run(100, 3.0), run(100, 5.0), run(100, 4.0), run(400, 2.0)])
        self.assertEqual([p["load"] for p in pts], [100, 400])
        self.assertEqual(pts[0]["p50_ms"], {"median": 4.0, "min": 3.0, "max": 5.0})
        self.assertEqual(pts[0]["repeats"], 3)

    def test_saturation_repeats_are_one_point(self):
        sat = [dict(run(900, 9.0), share=100, below_saturation=False), dict(run(1000, 8.0), share=100, below_saturation=False)]
        pts = curves.points([run(100, 3.0)] + sat)
        self.assertEqual([p["load"] for p in pts], [100, 950])
        self.assertEqual(pts[1]["repeats"], 2)

    def test_failed_runs_are_left_out(self):
        pts = curves.points([run(100, 3.0), run(100, 0, failed=True)])
        self.assertEqual(pts[0]["repeats"], 1)


class Regressions(unittest.TestCase):
    def test_the_nagle_stall_is_a_regression(self):
        # The figures of issue 13: p50 5 ms at 400/s, 25.4 ms at 1,600/s, 6.6 ms at 6,400/s.
        pts = curves.points([run(400, 5.0), run(1600, 25.4), run(1600, 25.3), run(6400, 6.6), run(6400, 7.1)])
        found = curves.regressions(pts)
        self.assertEqual([(low["load"], high["load"]) for low, high in found], [(1600, 6400)])

    def test_rising_latency_is_fine(self):
        pts = curves.points([run(400, 2.0), run(1600, 3.0), run(6400, 9.0)])
        self.assertEqual(curves.regressions(pts), [])

    def test_noise_within_the_repeats_is_not_a_regression(self):
        # Lower load's best repeat is not beyond the higher load's worst repeat by the margin.
        pts = curves.points([run(400, 3.0), run(400, 4.0), run(1600, 2.9), run(1600, 3.3)])
        self.assertEqual(curves.regressions(pts), [])

    def test_sub_millisecond_differences_are_noise(self):
        pts = curves.points([run(400, 0.40), run(1600, 0.15)])
        self.assertEqual(curves.regressions(pts), [])

    def test_points_at_saturation_are_not_judged(self):
        pts = curves.points([run(400, 30.0, below=False), run(1600, 5.0)])
        self.assertEqual(curves.regressions(pts), [])


if __name__ == "__main__":
    unittest.main()
