"""Build the CLIP BPE tokenizer files shipped in ``diffris/assets/clip_tokenizer/``.

The source is OpenAI CLIP's ``bpe_simple_vocab_16e6.txt.gz`` (MIT licence), as distributed inside
the ``open-clip-torch`` wheel. Fetch it without installing the package (it depends on torch)::

    cd /tmp && pip download --no-deps open-clip-torch==3.3.0
    unzip -o open_clip_torch-3.3.0-py3-none-any.whl open_clip/bpe_simple_vocab_16e6.txt.gz
    python tools/build_clip_tokenizer.py /tmp/open_clip/bpe_simple_vocab_16e6.txt.gz

The conversion follows CLIP's own ``SimpleTokenizer``: the first line of the merges file is a
version header; the 48,894 merges that follow define the BPE; the vocabulary is the 256 byte
symbols, the same with the end-of-word marker ``</w>``, one entry per merge result, and the two
special tokens: 49,408 entries in all. The output is the Hugging Face layout (``vocab.json``,
``merges.txt``, ``tokenizer_config.json``, ``special_tokens_map.json``) that
``CLIPTokenizer.from_pretrained(folder)`` reads.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

#: CLIP keeps the first 49152 - 256 - 2 merges so that the vocabulary has 49,408 entries.
NUM_MERGES = 49152 - 256 - 2
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "diffris" / "assets" / "clip_tokenizer"


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for the bytes 0..255, in CLIP's order.

    Printable Latin-1 bytes stand for themselves; the others (controls, space, ...) are shifted to
    code points from 256 upwards so that every byte has a visible, non-whitespace symbol.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codes = list(printable)
    shifted = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + shifted)
            shifted += 1
    return [chr(code) for code in codes]


def convert(source: Path) -> tuple[dict[str, int], list[str]]:
    """Read CLIP's gzip merges file; return (token -> id vocabulary, merge lines)."""
    lines = gzip.decompress(source.read_bytes()).decode("utf-8").split("\n")
    merges = lines[1 : NUM_MERGES + 1]
    if len(merges) != NUM_MERGES or any(len(line.split()) != 2 for line in merges):
        raise SystemExit(f"{source} is not CLIP's bpe_simple_vocab_16e6.txt.gz")
    symbols = byte_symbols()
    tokens = symbols + [symbol + "</w>" for symbol in symbols]
    tokens += ["".join(line.split()) for line in merges]
    tokens += [BOS, EOS]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise SystemExit(f"{source}: duplicate tokens in the vocabulary")
    return vocab, merges


def write(folder: Path, vocab: dict[str, int], merges: list[str]) -> None:
    """Write the Hugging Face tokenizer files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
    )
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "do_lower_case": True,
        "add_prefix_space": False,
        "errors": "replace",
        **special,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("source", type=Path, help="path to bpe_simple_vocab_16e6.txt.gz")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    vocab, merges = convert(args.source)
    write(args.output, vocab, merges)
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {args.output}")


if __name__ == "__main__":
    main()
