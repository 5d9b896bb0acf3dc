"""Processes for data-parallel training: launch, process groups, and the DDP-wrapped heads.

Three ways to run the same worker function:

- one process, no process group (``--gpus 1`` or ``--procs 1``);
- ``--gpus N`` / ``--procs N``: this module starts N processes itself with
  ``torch.multiprocessing`` (spawn), NCCL on CUDA devices, gloo on CPUs; rank 0's progress events
  and any error reach the parent through a queue, so the parent prints them and raises the
  same one-line error;
- under ``torchrun`` (several nodes): the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR``, ``MASTER_PORT``) says who this process is, and it runs its rank inline.

Only the trainable heads (CP-adapter + PCMRD, ~0.5 M parameters for ``tiny``, a few M for
``sd15``) are wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`: DDP broadcasts and
all-reduces exactly those, never the ~1 B frozen backbone parameters, and the frozen parts are
not even visible to it. Gradients still flow *through* the frozen UNet into the CP-adapter.
"""

from __future__ import annotations

import ctypes
import datetime
import importlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from diffris.errors import DiffrisError

if TYPE_CHECKING:
    from diffris.models.interface import ImageFeatures, ReferringModel, Tokens

logger = logging.getLogger(__name__)

#: How long a collective (or the rendezvous) may wait for the other processes.
TIMEOUT = datetime.timedelta(minutes=30)
#: ``emit(event)``: rank 0 hands progress events to whoever launched the run.
Emit = Callable[[Any], None]
_TORCHRUN_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """Who this process is in the run.

    Attributes:
        rank: global rank, 0 ≤ rank < world_size.
        world_size: number of training processes over all nodes.
        local_rank: rank on this node (selects the CUDA device).
        device: where this process computes.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes the run folder and reports progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process (a process group exists)."""
        return self.world_size > 1


def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when started by ``torchrun``; None otherwise."""
    if not all(key in os.environ for key in _TORCHRUN_KEYS):
        return None
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])


def backend_for(device: torch.device) -> str:
    """NCCL between CUDA devices, gloo between CPUs."""
    return "nccl" if device.type == "cuda" else "gloo"


def init_process(rank: int, world_size: int, local_rank: int, *, use_cuda: bool) -> DistContext:
    """Pick the device and join the process group (``env://`` rendezvous) if there are several.

    Raises:
        DiffrisError: CUDA requested but this node has too few devices.
    """
    if use_cuda:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if local_rank >= count:
            raise DiffrisError(
                f"process {rank} needs CUDA device {local_rank} but this machine has {count}; "
                "use fewer --gpus, or --gpus 0 --procs N to train on CPUs"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend_for(device), rank=rank, world_size=world_size, timeout=TIMEOUT
        )
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown() -> None:
    """Leave the process group, if any, once every rank has arrived here.

    Without the barrier a rank that finishes first tears its gloo connections down while rank 0
    is still saving; its peer then aborts (``terminate called without an active exception``).
    """
    if dist.is_available() and dist.is_initialized():
        try:
            if sys.exc_info()[0] is None:  # a failing rank must not wait for the others
                dist.barrier()
        finally:
            dist.destroy_process_group()


# -- collectives that are no-ops in a single process ---------------------------------------------


def all_sum(tensor: Tensor, ctx: DistContext) -> Tensor:
    """Sum ``tensor`` over all processes (in place); returns it."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_to_main(obj: Any, ctx: DistContext) -> list[Any] | None:
    """Every rank's ``obj`` on rank 0 (in rank order); None on the other ranks."""
    if not ctx.distributed:
        return [obj]
    gathered: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def broadcast_from_main(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    """Wait for every process."""
    if ctx.distributed:
        dist.barrier()


# -- the DDP-wrapped heads -----------------------------------------------------------------------


class TrainableHeads(nn.Module):
    """The model's trainable sub-modules as one module, the rest of the model kept outside it.

    ``forward`` runs the differentiable part of the model: the image encoding when it has
    trainable parts (RSRefSeg's LoRA), the text encoding and the decode. Only the sub-modules of
    :meth:`~diffris.models.interface.ReferringModel.trainable_modules` are registered, so that
    DDP neither broadcasts nor watches a frozen backbone outside them (DiffRIS's VAE and UNet).
    """

    def __init__(self, model: ReferringModel) -> None:
        super().__init__()
        for name, module in model.trainable_modules().items():
            self.add_module(name.replace(".", "_"), module)
        object.__setattr__(self, "whole_model", model)  # unregistered on purpose

    def forward(self, inputs: Tensor | ImageFeatures, tokens: Tokens, *, encoded: bool) -> Tensor:
        """B images (pixels in [-1, 1], or their image features when ``encoded``) and B prompts'
        tokens -> (B, 1, H, W) logits."""
        model: ReferringModel = self.whole_model  # type: ignore[assignment]
        image = inputs if encoded else model.encode_image(inputs)
        return model.decode(image, model.encode_text(tokens))


def unused_parameters(model: ReferringModel, *, size: int = 64) -> list[str]:
    """Trainable parameters that get no gradient from a forward pass (ablations switch parts off).

    Runs one small forward/backward (``size``² px, one prompt) without touching the global RNG;
    gradients are cleared afterwards.
    """
    heads = TrainableHeads(model)
    device = model.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        pixels = torch.zeros(1, 3, size, size, device=device)
        heads(pixels, model.tokenize(["a probe"]), encoded=False).float().sum().backward()
    unused = [name for name, p in model.named_trainable_parameters() if p.grad is None]
    for param in model.trainable_parameters():
        param.grad = None
    return unused


def wrap_heads(model: ReferringModel, ctx: DistContext) -> nn.Module:
    """The module a training step calls: :class:`TrainableHeads`, in DDP when distributed.

    DDP broadcasts the registered buffers from rank 0 at every forward: DiffRIS's heads have none
    (LayerNorm/GroupNorm only); RSRefSeg's are SAM's frozen positional tables, already equal.
    """
    heads = TrainableHeads(model)
    if not ctx.distributed:
        return heads
    unused = unused_parameters(model)
    if unused:
        logger.info("%d trainable tensors get no gradient in this configuration", len(unused))
    return nn.parallel.DistributedDataParallel(
        heads,
        device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
        find_unused_parameters=bool(unused),
    )


# -- launching -----------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on this machine right now (for the rendezvous of locally started ranks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the launching process dies, so no orphan keeps training."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _child(
    rank: int,
    world_size: int,
    use_cuda: bool,
    worker: Callable[..., Any],
    args: Sequence[Any],
    channel: Any,
) -> None:
    """Entry point of a spawned rank: run ``worker`` and report its result or error."""
    _die_with_parent()
    emit: Emit | None = (lambda event: channel.put(("event", event))) if rank == 0 else None
    try:
        ctx = init_process(rank, world_size, rank, use_cuda=use_cuda)
        result = worker(ctx, *args, emit=emit)
        if rank == 0:
            channel.put(("result", result))
    except DiffrisError as error:
        kind = type(error)
        channel.put(("error", kind.__module__, kind.__qualname__, str(error)))
        raise
    finally:
        shutdown()


def _rebuild_error(module: str, name: str, message: str) -> DiffrisError:
    """The DiffrisError subclass ``module.name`` with ``message`` (DiffrisError if unknown)."""
    try:
        kind = getattr(importlib.import_module(module), name)
        if isinstance(kind, type) and issubclass(kind, DiffrisError):
            return kind(message)
    except (ImportError, AttributeError, TypeError):
        pass
    return DiffrisError(message)


def spawn(
    worker: Callable[..., Any],
    args: Sequence[Any],
    *,
    nprocs: int,
    use_cuda: bool,
    on_event: Emit | None = None,
) -> Any:
    """Run ``worker(ctx, *args, emit=...)`` in ``nprocs`` new processes; rank 0's result.

    ``worker`` and ``args`` must be picklable (a module-level function and plain values).
    Rank 0's events go to ``on_event`` in this process.

    Raises:
        DiffrisError: the first user error any rank raised (same class and message).
        RuntimeError: a rank crashed otherwise.
    """
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    channel = context.SimpleQueue()
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(free_port())
    processes = mp.start_processes(
        _child,
        args=(nprocs, use_cuda, worker, tuple(args), channel),
        nprocs=nprocs,
        join=False,
        start_method="spawn",
    )
    result: Any = None
    errors: list[DiffrisError] = []

    def drain() -> None:
        nonlocal result
        while not channel.empty():
            message = channel.get()
            if message[0] == "event" and on_event is not None:
                on_event(message[1])
            elif message[0] == "result":
                result = message[1]
            elif message[0] == "error":
                errors.append(_rebuild_error(*message[1:]))

    try:
        while not processes.join(timeout=0.2):
            drain()
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as failure:
        drain()
        if errors:
            raise errors[0] from None
        raise RuntimeError(f"a training process failed: {failure}") from None
    except BaseException:
        for process in processes.processes:
            if process.is_alive():
                process.kill()
        raise
    drain()
    return result
