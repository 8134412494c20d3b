"""Select, per region, the better of the global and the regional model, and plot the metrics.

Joins both branches of the pipeline (an ALL join): the global model's per-region RMSE comes in
as a param (from the validation step's output); the regional models' metrics are read from
the workspace where each foreach iteration wrote them. Emits the choice per region, the
mean RMSE of the chosen models, and a PNG bar chart for the UI.
"""

from __future__ import annotations

import glob
import io
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kaon import job  # noqa: E402


def main() -> None:
    p = job.params()
    workspace = str(p["workspace"])
    iteration = int(p.get("iteration", 0))
    global_by_region = {str(k): float(v) for k, v in dict(p["global_rmse_by_region"]).items()}
    regional: dict[str, float] = {}
    for path in glob.glob(os.path.join(workspace, "regional", f"iter{iteration}", "*", "metrics.json")):
        with open(path) as f:
            m = json.load(f)
        regional[m["region"]] = float(m["rmse"])

    regions = sorted(set(global_by_region) | set(regional))
    choice: dict[str, str] = {}
    chosen: dict[str, float] = {}
    for r in regions:
        g, l = global_by_region.get(r, float("inf")), regional.get(r, float("inf"))
        choice[r] = "regional" if l < g else "global"
        chosen[r] = min(g, l)
    mean = sum(chosen.values()) / max(1, len(chosen))

    fig, ax = plt.subplots(figsize=(6, 3), dpi=80)
    xs = range(len(regions))
    ax.bar([x - 0.2 for x in xs], [global_by_region.get(r, 0) for r in regions], 0.4, label="global")
    ax.bar([x + 0.2 for x in xs], [regional.get(r, 0) for r in regions], 0.4, label="regional")
    ax.set_xticks(list(xs), regions)
    ax.set_ylabel("RMSE (lower is better)")
    ax.set_title(f"Held-out RMSE per region, iteration {iteration}")
    ax.legend()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    job.image("rmse_by_region", buf.getvalue())

    job.output("choice", choice)
    job.output("chosen_rmse", {r: round(v, 5) for r, v in chosen.items()})
    job.output("mean_rmse", round(mean, 5))
    job.output("regional_wins", sum(1 for c in choice.values() if c == "regional"))
    print(f"choice={choice} mean_rmse={mean:.4f}")


if __name__ == "__main__":
    main()
