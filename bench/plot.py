"""SVG plots of the latency-against-load curves (matplotlib, installed by `scripts/setup.sh
bench` into target/bench-venv). One figure per sweep: p50, p99 and p99.9 against offered load,
both axes logarithmic, one line per server (the median of the repeats, the band their spread).
"""

import matplotlib

matplotlib.use("svg")
matplotlib.rcParams["svg.hashsalt"] = "pychat-bench"  # the same run draws the same file
matplotlib.rcParams["svg.fonttype"] = "none"

import matplotlib.pyplot as plt  # noqa: E402

import curves  # noqa: E402

STYLE = {
    "pychat sqlite": ("#1f5fbf", "-"), "pychat postgres": ("#2a9d8f", "-"), "pychat mysql": ("#8e44ad", "-"),
    "pychat": ("#1f5fbf", "-"), "limit": ("#555555", "--"), "node-ws": ("#e67e22", "--"),
    "node-socketio": ("#c0392b", "--"), "flask-socketio": ("#b8860b", ":"),
}


def plot(path, title, x_label, named_curves):
    """`named_curves`: [(name, points of curves.points)]. Writes an SVG to `path`."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharex=True)
    for ax, (key, label) in zip(axes, curves.PERCENTILES):
        for name, pts in named_curves:
            pts = [p for p in pts if key in p]
            if not pts:
                continue
            color, line = STYLE.get(name, (None, "-"))
            xs = [p["load"] for p in pts]
            ax.plot(xs, [p[key]["median"] for p in pts], line, color=color, marker="o", markersize=3,
                    linewidth=1.4, label=name)
            ax.fill_between(xs, [p[key]["min"] for p in pts], [p[key]["max"] for p in pts],
                            color=color, alpha=0.15, linewidth=0)
            over = [p for p in pts if not p["below_saturation"]]
            if over:
                ax.plot([p["load"] for p in over], [p[key]["median"] for p in over], "x", color=color,
                        markersize=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(label)
        ax.set_xlabel(x_label)
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", alpha=0.1)
    axes[0].set_ylabel("latency, ms")
    axes[-1].legend(fontsize=8, loc="upper left")
    fig.suptitle(title + "  (× = at or past saturation; band = spread of the repeats)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
