"""Decide whether the selected models are stable enough to publish.

Stable means the mean RMSE of the chosen models is at or under the target. When it is not,
the surrounding loop runs the training again with adjusted params (more epochs, less
regularisation), up to its max iterations.
"""

from __future__ import annotations

from kaon import job


def main() -> None:
    p = job.params()
    mean = float(p["mean_rmse"])
    target = float(p["target_rmse"])
    stable = mean <= target
    job.output("stable", stable)
    job.output("gap", round(mean - target, 5))
    job.message(
        f"mean RMSE {mean:.4f} {'<=' if stable else '>'} target {target:.4f}: "
        + ("stable, publishing" if stable else "not stable, retraining"),
        "info" if stable else "warning",
    )


if __name__ == "__main__":
    main()
