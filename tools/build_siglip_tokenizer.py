"""Build the small SigLIP-style tokenizer shipped in ``diffris/assets/siglip_tokenizer/``.

The ``rsrefseg-tiny`` preset needs a tokenizer that behaves like SigLIP's (lower-cased, an
end-of-sequence token appended, padded with ``</s>`` to 64 tokens) but diffris cannot ship the
real 32,000-piece SentencePiece model, nor read one without ``sentencepiece``. This builds a
word-level ``tokenizers`` model over every word of the synthetic data's vocabulary and
expressions (``diffris/data/synthetic/vocab.py``, ``expressions.py``) plus common English words,
and saves it in the Hugging Face layout that ``AutoTokenizer.from_pretrained(folder)`` reads::

    python tools/build_siglip_tokenizer.py            # rewrites the asset folder

Ids follow SigLIP's: ``<pad>`` 0, ``</s>`` 1 (also the padding token, as in SigLIP's config),
``<unk>`` 2, then the words in sorted order. The output is deterministic.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "diffris" / "assets" / "siglip_tokenizer"
SOURCES = [
    ROOT / "diffris" / "data" / "synthetic" / name for name in ("vocab.py", "expressions.py")
]
MAX_LENGTH = 64
SPECIALS = ["<pad>", "</s>", "<unk>"]
COMMON_TEXT = """
a an the this that these those it its of in on at to from by with without near next far close
and or not no all any some each every one two three four five six many few several both other
left right top bottom upper lower middle centre center corner side edge front back behind
between beside along across around over under above below inside outside part half
big small large little long short wide narrow tall high low round square rectangular
largest smallest biggest longest shortest widest nearest closest farthest larger smaller
red blue white yellow green black grey gray brown orange purple pink dark light bright
building buildings house houses roof roofs tower factory warehouse shed hall church school
vehicle vehicles car cars truck trucks bus boat boats ship ships plane airplane airplanes
road roads street streets highway bridge path track railway runway parking lot lots
river rivers pond ponds lake lakes water sea harbor harbour stream canal pool
field fields farmland grass meadow crop crops forest tree trees wood woods park garden
ground land area region place image picture photo scene view tile object objects thing
is are was be there here which who where what located lies seen shown first second third
group groups row rows line lines cluster pair set
, . ; : ! ? ' " - ( ) /
"""
COMMON = COMMON_TEXT.split()


def vocabulary() -> list[str]:
    """The words: every lower-case word of the synthetic sources plus :data:`COMMON` (which
    also holds punctuation, split off by the pre-tokenizer)."""
    words = set(COMMON)
    for source in SOURCES:
        words.update(re.findall(r"[a-z]+", source.read_text(encoding="utf-8").lower()))
    return sorted(words)


def build(output: Path) -> int:
    """Write the tokenizer files to ``output``; returns the vocabulary size."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(SPECIALS + vocabulary())}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        pad_token="</s>",
        eos_token="</s>",
        model_max_length=MAX_LENGTH,
    )
    output.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(output))
    return len(vocab)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    size = build(args.output)
    print(f"wrote {args.output} ({size} tokens)")


if __name__ == "__main__":
    main()
