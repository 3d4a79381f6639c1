"""The simulator's in-memory record table: one numpy array per column, one row per feed record."""
from __future__ import annotations

import numpy as np

# Column → dtype. `situation` indexes situations.yaml (-1 for episode records); `episode` indexes the
# planned episodes (-1 for baseline); `incident` groups the records of one happening across feeds;
# `caller` is a phone number as an integer (0: the writer draws a fresh one); `people` is the
# number of people involved as a grid worker would count them.
COLUMNS = {
    "feed": np.int8,
    "situation": np.int16,
    "episode": np.int16,
    "domain": np.int8,
    "ts": np.int64,
    "township": np.int32,
    "village": np.int32,
    "grid": np.int32,
    "incident": np.int64,
    "escalated": np.bool_,
    "caller": np.int64,
    "people": np.int32,
}


class Records:
    def __init__(self, **columns: np.ndarray):
        n = {len(v) for v in columns.values()}
        if len(n) > 1:
            raise ValueError(f"columns of different lengths: {n}")
        missing = set(COLUMNS) - set(columns)
        if missing:
            raise ValueError(f"missing columns: {sorted(missing)}")
        self.columns = {k: np.asarray(columns[k], dtype=t) for k, t in COLUMNS.items()}

    def __len__(self) -> int:
        return len(self.columns["feed"])

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.__dict__["columns"][name]
        except KeyError:
            raise AttributeError(name) from None

    def take(self, index: np.ndarray) -> "Records":
        return Records(**{k: v[index] for k, v in self.columns.items()})

    @classmethod
    def concat(cls, parts: list["Records"]) -> "Records":
        return cls(**{k: np.concatenate([p.columns[k] for p in parts]) for k in COLUMNS})

    @classmethod
    def empty(cls) -> "Records":
        return cls(**{k: np.zeros(0, dtype=t) for k, t in COLUMNS.items()})
