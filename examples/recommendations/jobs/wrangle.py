"""Wrangle the selected cohort: clean ratings, split train/test, list the regions present.

Reads the rows file written by the `select_users` SQL step (JSON lines), drops missing and
out-of-range ratings and duplicate (user, title) pairs (keeping the latest), splits 80/20
by a hash of the pair so the split is stable across loop iterations, and writes
`train.csv` / `test.csv` into the run's workspace. The list of regions found becomes the
`regions` output, which the regional-model foreach iterates at run time.
"""

from __future__ import annotations

import csv
import json
import os
import zlib

from kaon import job


def main() -> None:
    p = job.params()
    rows_file = str(p["rows_file"])
    workspace = str(p["workspace"])
    os.makedirs(workspace, exist_ok=True)
    job.milestone("reading cohort")

    latest: dict[tuple[int, int], dict[str, object]] = {}
    dropped = 0
    with open(rows_file, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            rating = row.get("rating")
            if rating is None or not (1 <= float(rating) <= 5):
                dropped += 1
                continue
            key = (int(row["user_id"]), int(row["title_id"]))
            if key not in latest or int(row["ts"]) > int(latest[key]["ts"]):
                latest[key] = row
    job.progress(50, f"{len(latest)} clean ratings, {dropped} dropped")

    fields = ["user_id", "title_id", "rating", "country"]
    counts = {"train": 0, "test": 0}
    with (
        open(os.path.join(workspace, "train.csv"), "w", newline="") as ftrain,
        open(os.path.join(workspace, "test.csv"), "w", newline="") as ftest,
    ):
        writers = {"train": csv.writer(ftrain), "test": csv.writer(ftest)}
        for w in writers.values():
            w.writerow(fields)
        for (user, title), row in sorted(latest.items()):
            part = "test" if zlib.crc32(f"{user}:{title}".encode()) % 5 == 0 else "train"
            writers[part].writerow([user, title, float(row["rating"]), row["country"]])
            counts[part] += 1

    regions = sorted({str(r["country"]) for r in latest.values()})
    job.output("regions", regions)
    job.output("train_rows", counts["train"])
    job.output("test_rows", counts["test"])
    job.output("dropped_rows", dropped)
    job.progress(100, f"{len(regions)} regions")
    print(f"train={counts['train']} test={counts['test']} dropped={dropped} regions={regions}")


if __name__ == "__main__":
    main()
