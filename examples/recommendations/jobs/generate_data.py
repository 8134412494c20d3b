"""Generate the synthetic viewing data of the recommendations example.

Users in several countries rate titles; each region has its own taste (a latent vector
per region), so a per-region model can beat a global one for some regions — the question
the pipeline answers. Deterministic for a given seed; timestamps spread over the 60 days
before generation so that a run's date window (from RUN_TS) finds recent viewing.

Usage: python generate_data.py --db PATH [--seed 7] [--users 1500] [--titles 200]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import time

import numpy as np

COUNTRIES = ["US", "BR", "IN", "DE", "JP"]
DAY_MS = 86_400_000


def generate(db_path: str, seed: int, n_users: int, n_titles: int) -> int:
    rng = np.random.default_rng(seed)
    rank = 4
    title_factors = rng.normal(0, 1, (n_titles, rank))
    title_bias = rng.normal(0, 0.4, n_titles)
    region_taste = {c: rng.normal(0, 0.9, rank) for c in COUNTRIES}
    now_ms = int(time.time() * 1000)

    tmp = db_path + ".tmp"
    if os.path.exists(tmp):
        os.remove(tmp)
    con = sqlite3.connect(tmp)
    con.executescript(
        """
        create table users (user_id integer primary key, country text not null);
        create table ratings (
          user_id integer not null, title_id integer not null,
          rating real, ts integer not null, country text not null);
        """
    )
    rows = []
    users = []
    for user_id in range(n_users):
        country = COUNTRIES[int(rng.integers(0, len(COUNTRIES)))]
        users.append((user_id, country))
        taste = region_taste[country] + rng.normal(0, 0.3, rank)
        n = int(rng.integers(15, 45))
        for title_id in rng.choice(n_titles, size=n, replace=False):
            score = 3.2 + title_bias[title_id] + 0.45 * float(title_factors[title_id] @ taste)
            rating = float(np.clip(round(score + rng.normal(0, 0.5)), 1, 5))
            ts = now_ms - int(rng.integers(0, 60)) * DAY_MS - int(rng.integers(0, DAY_MS))
            rows.append((user_id, int(title_id), rating, ts, country))
    # A little dirt for the wrangling step to clean: missing and out-of-range ratings.
    for i in range(0, len(rows), 97):
        u, t, _, ts, c = rows[i]
        rows[i] = (u, t, None if i % 2 else 9.0, ts, c)
    con.executemany("insert into users values (?, ?)", users)
    con.executemany("insert into ratings values (?, ?, ?, ?, ?)", rows)
    con.commit()
    con.close()
    os.replace(tmp, db_path)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--titles", type=int, default=200)
    args = parser.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(args.db)), exist_ok=True)
    n = generate(args.db, args.seed, args.users, args.titles)
    print(f"wrote {n} ratings for {args.users} users to {args.db}")


if __name__ == "__main__":
    main()
