"""Validate the global model: RMSE of its predictions on held-out data, overall and per region."""

from __future__ import annotations

import csv
import glob
import math
import os

from kaon import job


def main() -> None:
    p = job.params()
    files = sorted(glob.glob(os.path.join(str(p["predictions_dir"]), "*.csv")))
    sq: dict[str, list[float]] = {}
    for path in files:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                pred = min(5.0, max(1.0, float(row["prediction"])))
                sq.setdefault(row["country"], []).append((pred - float(row["rating"])) ** 2)
    everything = [x for errs in sq.values() for x in errs]
    if not everything:
        raise SystemExit("no predictions found in " + str(p["predictions_dir"]))
    overall = math.sqrt(sum(everything) / len(everything))
    per_region = {c: round(math.sqrt(sum(e) / len(e)), 5) for c, e in sorted(sq.items())}
    job.output("rmse", round(overall, 5))
    job.output("rmse_by_region", per_region)
    print(f"global rmse={overall:.4f} by region={per_region}")


if __name__ == "__main__":
    main()
