"""Each rank's part of every global mini-batch, from one seeded order.

Every rank draws the same global batches (``ferroptim.train.data.batches``
with the same seed and epoch) and keeps a contiguous part of each, so the
ranks together see exactly the single-process run's batches, and a resumed
run sees the same ones.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ferroptim.train.data import batches

__all__ = ["DistributedSampler", "local_part"]


def local_part(idx: np.ndarray, rank: int, size: int) -> np.ndarray:
    """Rank ``rank``'s contiguous part of a global batch ``idx`` (parts differ
    in length by at most one; a rank's part may be empty for a tiny batch)."""
    n = len(idx)
    return idx[rank * n // size : (rank + 1) * n // size]


class DistributedSampler:
    """The local mini-batches of one rank, epoch after epoch.

    Parameters
    ----------
    n : int
        Number of samples.
    batch_size : int
        The global batch size (summed over ranks).
    rank : int
        This rank.
    size : int
        The world size.
    seed : int, default 0
        The seed of the shuffled order (the same on every rank).
    shuffle : bool, default True
        Shuffle every epoch.
    drop_last : bool, default False
        Drop the last, smaller global batch.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        rank: int,
        size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
    ) -> None:
        if not 0 <= rank < size:
            raise ValueError(f"rank: must be in [0, {size}), got {rank}")
        self.n, self.batch_size, self.rank, self.size = n, batch_size, rank, size
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last

    def epoch(self, epoch: int) -> Iterator[tuple[np.ndarray, float]]:
        """``(local indices, share)`` per global batch: ``share`` is the local
        part's fraction of the global batch (the ``weight`` of a step)."""
        for idx in batches(
            self.n,
            self.batch_size,
            seed=self.seed,
            epoch=epoch,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
        ):
            part = local_part(idx, self.rank, self.size)
            yield part, len(part) / len(idx)
