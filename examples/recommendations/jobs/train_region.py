"""Train and validate one region's model (one iteration of the regional foreach).

The region comes from the foreach value; hyper-parameters come from step params, which the
loop adjusts on each pass (more epochs, different regularisation). Reports progress per
epoch, the held-out RMSE as an output, and the model as a data artifact partitioned by
region and dateint.
"""

from __future__ import annotations

import json
import os

import numpy as np

import mf
from kaon import job


def main() -> None:
    p = job.params()
    region = str(p["region"])
    workspace = str(p["workspace"])
    epochs = int(p["epochs"])
    reg = float(p["reg"])
    iteration = int(p.get("iteration", 0))
    out_dir = os.path.join(workspace, "regional", f"iter{iteration}", region)
    os.makedirs(out_dir, exist_ok=True)

    train = mf.load(os.path.join(workspace, "train.csv"), region)
    test = mf.load(os.path.join(workspace, "test.csv"), region)
    job.milestone("data loaded")
    job.counter("train_ratings", len(train.values))

    def on_epoch(e: int) -> None:
        job.progress(100.0 * e / epochs, f"{region}: epoch {e}/{epochs}")

    model = mf.train(train, rank=4, epochs=epochs, reg=reg, lr=0.02, seed=11, on_epoch=on_epoch)
    score = mf.rmse(model, test)
    path = os.path.join(out_dir, "model.npz")
    np.savez(path, **model)
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump({"region": region, "rmse": score, "test_ratings": len(test.values)}, f)

    job.output("rmse", round(score, 5))
    job.output("test_ratings", len(test.values))
    job.output("model_path", path)
    job.artifact(
        "recommendations.model.regional",
        {"region": region, "dateint": str(p["dateint"])},
        f"file://{path}",
        {"rmse": round(score, 5), "epochs": epochs, "reg": reg},
    )
    print(f"{region}: rmse={score:.4f} on {len(test.values)} held-out ratings")


if __name__ == "__main__":
    main()
