"""Writing safetensors files with the permissions every other file of ours gets.

safetensors >= 0.8 writes through a temporary file that is always created 0600 and renamed
into place, ignoring the umask (safetensors issue #782). A model trained into a shared runs/
folder would then be unreadable by colleagues or by the account that serves it, while its
config.json next to it is readable. We give the file the mode a plain ``open()`` would have.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file under this process's umask."""
    # os.umask can only be read by setting it; set a restrictive value for the instant
    # between the two calls so nothing created meanwhile is more open than intended.
    umask = os.umask(0o077)
    os.umask(umask)
    return 0o666 & ~umask


def save_tensors(
    tensors: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None
) -> None:
    """``safetensors.torch.save_file`` with umask-respecting permissions."""
    from safetensors.torch import save_file

    save_file(tensors, path, metadata=metadata)
    if os.name == "posix":
        os.chmod(path, default_file_mode())
