"""Shared test set-up: keep torch to one thread per process so parallel tests don't fight."""

import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
