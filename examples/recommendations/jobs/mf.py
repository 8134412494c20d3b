"""A small biased matrix-factorisation model (numpy, SGD) shared by the regional trainer.

Kept deliberately plain: the point of the example is the pipeline, not the model.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

import numpy as np


@dataclass
class Ratings:
    users: np.ndarray
    titles: np.ndarray
    values: np.ndarray


def load(path: str, region: str | None = None) -> Ratings:
    users, titles, values = [], [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if region is not None and row["country"] != region:
                continue
            users.append(int(row["user_id"]))
            titles.append(int(row["title_id"]))
            values.append(float(row["rating"]))
    return Ratings(np.array(users, dtype=np.int64), np.array(titles, dtype=np.int64),
                   np.array(values, dtype=np.float64))


def train(data: Ratings, *, rank: int, epochs: int, reg: float, lr: float, seed: int,
          on_epoch=None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_users = int(data.users.max(initial=0)) + 1
    n_titles = int(data.titles.max(initial=0)) + 1
    mu = float(data.values.mean()) if len(data.values) else 3.0
    bu, bt = np.zeros(n_users), np.zeros(n_titles)
    pu = rng.normal(0, 0.1, (n_users, rank))
    qt = rng.normal(0, 0.1, (n_titles, rank))
    order = np.arange(len(data.values))
    for epoch in range(epochs):
        rng.shuffle(order)
        for i in order:
            u, t, r = data.users[i], data.titles[i], data.values[i]
            err = r - (mu + bu[u] + bt[t] + pu[u] @ qt[t])
            bu[u] += lr * (err - reg * bu[u])
            bt[t] += lr * (err - reg * bt[t])
            pu[u], qt[t] = pu[u] + lr * (err * qt[t] - reg * pu[u]), qt[t] + lr * (err * pu[u] - reg * qt[t])
        if on_epoch is not None:
            on_epoch(epoch + 1)
    return {"mu": np.array([mu]), "bu": bu, "bt": bt, "pu": pu, "qt": qt}


def rmse(model: dict[str, np.ndarray], data: Ratings) -> float:
    if len(data.values) == 0:
        return float("nan")
    mu = float(model["mu"][0])
    preds = []
    for u, t in zip(data.users, data.titles):
        p = mu
        if u < len(model["bu"]):
            p += model["bu"][u]
        if t < len(model["bt"]):
            p += model["bt"][t]
        if u < len(model["pu"]) and t < len(model["qt"]):
            p += float(model["pu"][u] @ model["qt"][t])
        preds.append(min(5.0, max(1.0, p)))
    return float(np.sqrt(np.mean((np.array(preds) - data.values) ** 2)))
