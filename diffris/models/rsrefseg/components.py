"""The frozen parts of an RSRefSeg model, as loaded from Hugging Face folders or built tiny."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, SamModel, SiglipModel


@dataclasses.dataclass
class RSRefSegComponents:
    """SigLIP (both towers) with its tokenizer, and SAM, with the folders they came from.

    Attributes:
        siglip: ``transformers.SiglipModel``.
        tokenizer: SigLIP's tokenizer (the real one, or the bundled small one for ``tiny``).
        sam: ``transformers.SamModel``.
        siglip_folder: the folder SigLIP was loaded from (keys the fingerprint cache); None
            for weights built in memory.
        sam_folder: likewise for SAM.
    """

    siglip: SiglipModel
    tokenizer: PreTrainedTokenizerBase
    sam: SamModel
    siglip_folder: Path | None = None
    sam_folder: Path | None = None
