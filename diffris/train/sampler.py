"""The training data order: a pure function of (seed, epoch), sharded over processes by chunks.

Every epoch is one permutation of the training samples (``torch.randperm`` seeded with
``seed + epoch``, as :class:`~torch.utils.data.DistributedSampler` does), cut into optimiser steps
of ``global_batch`` samples (the tail that does not fill a step is dropped, so every step has the
same size). A step is cut into chunks of ``device_batch`` consecutive samples; chunk ``c`` goes to
process ``c % world`` as its micro-batch ``c // world``. So

- a global batch holds the same samples whatever the process count;
- a chunk (one forward pass) holds the same samples whatever the process count, as long as the
  micro-batch size is the same, which is what makes randomness keyed on the chunk (the Gumbel
  noise of the tiny model's OAQIL) independent of the process layout;
- resuming at step ``s`` of an epoch is a matter of starting the iteration there
  (:meth:`StepShardSampler.set_position`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
from torch.utils.data import DistributedSampler

from diffris.errors import InputError


class StepShardSampler(DistributedSampler):
    """Indices for one process: its micro-batches of every optimiser step, in order.

    Args:
        dataset: the training dataset (only its length is used).
        global_batch: samples per optimiser step over all processes.
        device_batch: samples per micro-batch on one process.
        num_replicas: number of processes.
        rank: this process, 0 ≤ rank < num_replicas.
        seed: the run's seed; epoch ``e`` uses the permutation seeded with ``seed + e``.

    Raises:
        InputError: the dataset is smaller than one global batch, or the batch sizes do not fit.
    """

    def __init__(
        self,
        dataset: Sized,
        *,
        global_batch: int,
        device_batch: int,
        num_replicas: int,
        rank: int,
        seed: int,
    ) -> None:
        super().__init__(
            dataset,  # type: ignore[arg-type]
            num_replicas=num_replicas,
            rank=rank,
            shuffle=True,
            seed=seed,
            drop_last=True,
        )
        if global_batch % (device_batch * num_replicas):
            raise InputError(
                f"global batch {global_batch} is not a multiple of {num_replicas} process(es) x "
                f"device batch {device_batch}"
            )
        size = len(dataset)
        if size < global_batch:
            raise InputError(
                f"the training split has {size} samples, fewer than one global batch of "
                f"{global_batch}; use --batch-size {size} or less"
            )
        self.size = size
        self.global_batch = global_batch
        self.device_batch = device_batch
        self.micro_batches = global_batch // (device_batch * num_replicas)
        self.steps_per_epoch = size // global_batch
        self.start_step = 0

    def set_position(self, epoch: int, step: int) -> None:
        """Iterate epoch ``epoch`` from its optimiser step ``step`` (0-based) on."""
        if not 0 <= step <= self.steps_per_epoch:
            raise ValueError(f"step {step} is outside 0..{self.steps_per_epoch}")
        self.set_epoch(epoch)
        self.start_step = step

    def permutation(self) -> torch.Tensor:
        """This epoch's order of all samples: (size,) int64."""
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        return torch.randperm(self.size, generator=generator)

    def chunk(self, micro: int) -> int:
        """The chunk number (0 ≤ c < global_batch / device_batch) of micro-batch ``micro``."""
        return micro * self.num_replicas + self.rank

    def step_indices(self, step: int) -> list[int]:
        """This process' samples of optimiser step ``step``, micro-batch after micro-batch."""
        order = self.permutation()
        start = step * self.global_batch
        indices: list[int] = []
        for micro in range(self.micro_batches):
            first = start + self.chunk(micro) * self.device_batch
            indices += order[first : first + self.device_batch].tolist()
        return indices

    def __iter__(self) -> Iterator[int]:
        order = self.permutation().tolist()
        for step in range(self.start_step, self.steps_per_epoch):
            start = step * self.global_batch
            for micro in range(self.micro_batches):
                first = start + self.chunk(micro) * self.device_batch
                yield from order[first : first + self.device_batch]

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.micro_batches * self.device_batch
