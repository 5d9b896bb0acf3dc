"""One check for a trained state against the model it is loaded into, for every architecture."""

from __future__ import annotations

from typing import TYPE_CHECKING

from diffris.errors import CheckpointMismatchError

if TYPE_CHECKING:
    from torch import Tensor

#: A mismatch message names this many tensors, then counts the rest (it stays one line).
MAX_LISTED_PROBLEMS = 6


def check_trainable_state(
    expected: dict[str, Tensor], state: dict[str, Tensor], *, source: str, options: str
) -> None:
    """Refuse ``state`` unless it has exactly ``expected``'s names, shapes and float kinds.

    Args:
        expected: the model's own trainable state (name -> tensor).
        state: the state to load.
        source: where ``state`` came from, for the message ("" when unknown).
        options: the model options a mismatch usually comes from, for the hint
            (``cp_adapter/pcmrd``, ``LoRA/prompter``).

    Raises:
        CheckpointMismatchError: listing *all* missing, unexpected, mis-shaped and non-float
            tensors in one line.
    """
    problems = [f"missing {name}" for name in expected if name not in state]
    problems += [f"unexpected {name}" for name in state if name not in expected]
    problems += [
        f"{name} has shape {tuple(state[name].shape)} but the model expects {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if name in state and state[name].shape != tensor.shape
    ]
    problems += [
        f"{name} is {str(state[name].dtype).removeprefix('torch.')}, not a float tensor"
        for name, tensor in expected.items()
        if name in state and tensor.is_floating_point() and not state[name].is_floating_point()
    ]
    if not problems:
        return
    where = f"{source} " if source else ""
    shown = "; ".join(problems[:MAX_LISTED_PROBLEMS])
    if len(problems) > MAX_LISTED_PROBLEMS:
        shown += f"; and {len(problems) - MAX_LISTED_PROBLEMS} more"
    raise CheckpointMismatchError(
        f"{where}does not match the model ({len(problems)} problem(s)): {shown}; "
        f"was it saved with other {options} options or another backbone?"
    )
