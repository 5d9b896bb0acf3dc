"""Stochastic weight averaging over epoch ends (Izmailov et al., 2018, "Averaging Weights Leads
to Wider Optima and Better Generalization").

From the end of epoch ``average_from`` on, a run keeps the running mean of its trainable weights
at every epoch end; validation scores that mean and ``last/``/``best/`` hold it, while the
optimiser keeps stepping its own weights, so the training trajectory is the one without
averaging. Only the trainable tensors are averaged (the frozen backbone is the preset's), which
is why this is not :class:`torch.optim.swa_utils.AveragedModel`: that copies the whole module,
1.2 B frozen parameters for RSRefSeg-L. Integer buffers take the latest value; floating buffers
(BatchNorm statistics, with the prompter's ``norm: batch``) are averaged like weights rather than
recomputed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

from diffris.models.interface import ReferringModel


class WeightAverage:
    """The running mean of a model's trainable tensors over the epoch ends it was given.

    Attributes:
        first_epoch: the first epoch averaged (None before any).
        count: epoch ends averaged so far.
    """

    def __init__(self) -> None:
        self.mean: dict[str, Tensor] = {}
        self.first_epoch: int | None = None
        self.count = 0

    @property
    def epochs(self) -> tuple[int, int] | None:
        """(first, last) epoch averaged, or None before any."""
        if self.first_epoch is None:
            return None
        return self.first_epoch, self.first_epoch + self.count - 1

    def add(self, model: ReferringModel, epoch: int) -> None:
        """Fold ``model``'s trainable tensors at the end of ``epoch`` into the mean."""
        if self.first_epoch is None:
            self.first_epoch = epoch
        self.count += 1
        with torch.no_grad():
            for name, tensor in model.trainable_state_dict().items():
                current = tensor.detach()
                if self.count == 1 or not current.is_floating_point():
                    self.mean[name] = current.clone()
                else:  # mean_n = mean_{n-1} + (x - mean_{n-1}) / n, as swa_utils does
                    self.mean[name] += (current - self.mean[name]) / self.count

    @contextlib.contextmanager
    def applied(self, model: ReferringModel) -> Iterator[None]:
        """``model`` holds the mean inside the block (if any epoch was averaged), its own
        weights again after it, bit for bit."""
        if not self.count:
            yield
            return
        own = {name: t.detach().clone() for name, t in model.trainable_state_dict().items()}
        model.load_trainable_state_dict(self.mean, source="the weight average")
        try:
            yield
        finally:
            model.load_trainable_state_dict(own, source="the weights under the average")

    # -- resumable state ------------------------------------------------------------------------

    def state_tensors(self) -> dict[str, Tensor]:
        """The mean, for the run's resumable state."""
        return {name: t.detach().cpu().contiguous().clone() for name, t in self.mean.items()}

    def state_meta(self) -> dict[str, int | None]:
        """Where the mean starts and how many epoch ends it holds, for the resumable state."""
        return {"first_epoch": self.first_epoch, "count": self.count}

    def restore(
        self, tensors: dict[str, Tensor], meta: dict[str, int | None] | None, device: torch.device
    ) -> None:
        """Back to a saved :meth:`state_tensors` / :meth:`state_meta` (a state without them:
        nothing averaged yet)."""
        meta = meta or {"first_epoch": None, "count": 0}
        self.first_epoch = meta["first_epoch"]
        self.count = int(meta["count"])
        self.mean = {name: t.to(device) for name, t in tensors.items()}
