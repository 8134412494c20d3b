"""Publish the selected models: write a manifest and announce it as a data artifact.

Runs in a container where a container runtime exists (otherwise as a plain command with the
same script). Downstream consumers (or other workflows, through an artifact trigger) pick
the published model up from the announced URI.
"""

from __future__ import annotations

import json
import os
import time

from kaon import job


def main() -> None:
    p = job.params()
    workspace = str(p["workspace"])
    # Where this process sees the workspace: the same path, or its mount point in a container.
    write_dir = str(p["write_dir"])
    manifest = {
        "choice": p["choice"],
        "chosen_rmse": p["chosen_rmse"],
        "dateint": str(p["dateint"]),
        "published_at": int(time.time() * 1000),
    }
    out = os.path.join(workspace, "published", "manifest.json")
    written = os.path.join(write_dir, "published", "manifest.json")
    os.makedirs(os.path.dirname(written), exist_ok=True)
    with open(written, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    mean = sum(float(v) for v in dict(p["chosen_rmse"]).values()) / max(1, len(p["chosen_rmse"]))
    job.artifact(
        "recommendations.model.published",
        {"dateint": str(p["dateint"])},
        f"file://{out}",
        {"mean_rmse": round(mean, 5), "regions": len(manifest["choice"])},
    )
    job.output("manifest", out)
    print(f"published {out}")


if __name__ == "__main__":
    main()
