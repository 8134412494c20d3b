"""Train the global model on the whole cohort with Spark MLlib ALS (a spark step).

Runs under spark-submit. Writes the test-set predictions as CSV for the validation step
and reports progress through kaon's in-job API (Spark's own progress comes from its REST
API, which the spark step type reads).
"""

from __future__ import annotations

import os

from pyspark.ml.recommendation import ALS
from pyspark.sql import SparkSession

from kaon import job


def main() -> None:
    p = job.params()
    workspace = str(p["workspace"])
    iteration = int(p.get("iteration", 0))
    max_iter = int(p["epochs"])
    reg = float(p["reg"])
    out_dir = os.path.join(workspace, "global", f"iter{iteration}")
    os.makedirs(out_dir, exist_ok=True)

    spark = SparkSession.builder.appName(f"kaon-global-model-iter{iteration}").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    # ALS's lineage grows with every iteration; without checkpoints a long fit overflows the
    # stack while serialising tasks (java.lang.StackOverflowError).
    spark.sparkContext.setCheckpointDir(os.path.join(out_dir, "checkpoints"))
    opts = {"header": True, "inferSchema": True}
    train = spark.read.csv(os.path.join(workspace, "train.csv"), **opts)
    test = spark.read.csv(os.path.join(workspace, "test.csv"), **opts)
    job.milestone("data loaded")

    als = ALS(userCol="user_id", itemCol="title_id", ratingCol="rating", rank=4,
              maxIter=max_iter, regParam=reg, coldStartStrategy="drop", seed=11)
    model = als.fit(train)
    job.progress(80, "model fitted")
    preds = model.transform(test).select("user_id", "title_id", "rating", "prediction", "country")
    preds_path = os.path.join(out_dir, "predictions")
    preds.coalesce(1).write.mode("overwrite").csv(preds_path, header=True)
    job.output("predictions_dir", preds_path)
    job.output("train_rows", train.count())
    job.progress(100, "predictions written")
    spark.stop()


if __name__ == "__main__":
    main()
