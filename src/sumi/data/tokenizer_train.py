"""Train a small byte-level BPE tokenizer (`train_tokenizer`), saved as HF tokenizer files."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..atomic import atomic_folder, check_target

DEFAULT_SPECIAL_TOKENS = ("<|pad|>", "<|endoftext|>", "<|beginoftext|>")
TRAINING_INFO_FILE = "sumi_tokenizer_training.json"
# what a saved tokenizer folder may hold (`overwrite=True` replaces only such a folder)
_TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "merges.txt",
        "chat_template.jinja",
        TRAINING_INFO_FILE,
    }
)
_WHAT = "a tokenizer folder (tokenizer.json and the other tokenizer files only)"
_CHUNK_CHARS = 1 << 20


def _iter_texts(files: Sequence[Path]) -> Iterator[str]:
    """Each file's text (UTF-8, invalid bytes -> U+FFFD, line ends kept), in pieces of about
    1 MiB cut at line ends (BPE pre-tokenization never crosses a line end's split anyway)."""
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        start = 0
        while start < len(text):
            end = min(len(text), start + _CHUNK_CHARS)
            if end < len(text):
                nl = text.rfind("\n", start, end)
                end = nl + 1 if nl >= start else end
            yield text[start:end]
            start = end


def why_not_replaceable(out: Path) -> str | None:
    """Why `overwrite=True` may not replace the folder `out` (None: a saved tokenizer only)."""
    if not (out / "tokenizer.json").is_file():
        return "it is not a tokenizer folder (no tokenizer.json)"
    foreign = sorted(p.name for p in out.iterdir() if p.name not in _TOKENIZER_FILES)
    if foreign:
        return f"it holds files that are not tokenizer files ({', '.join(foreign[:5])})"
    return None


def _check_training_files(paths: Sequence[Path]) -> None:
    if not paths:
        raise ValueError("train_tokenizer needs at least one training file")
    for p in paths:
        if p.is_dir():
            raise ValueError(
                f"tokenizer training file {str(p)!r} is a folder: give the text files in it "
                f"(e.g. {os.path.join(str(p), '*.txt')})"
            )
        if not p.is_file():
            raise FileNotFoundError(f"tokenizer training file {str(p)!r} does not exist")


def train_tokenizer(
    files: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    vocab_size: int,
    *,
    special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
    min_frequency: int = 2,
    seed: int = 0,
    bos_token: str = "<|beginoftext|>",
    eos_token: str = "<|endoftext|>",
    pad_token: str = "<|pad|>",
    overwrite: bool = False,
):
    """Train a byte-level BPE tokenizer on `files` and save it in `out_dir` as HF tokenizer files
    (``tokenizer.json`` + ``tokenizer_config.json``); returns the transformers fast tokenizer.

    Model: BPE over the 256 byte symbols (GPT-2 style ``ByteLevel`` pre-tokenizer with its regex,
    no prefix space, ``ByteLevel`` decoder, no normalizer), so any text encodes without unknown
    tokens and ``decode(encode(text)) == text`` exactly.

    Ids: the `special_tokens` come first, in order — with the defaults ``<|pad|>`` = 0,
    ``<|endoftext|>`` = 1 (EOS), ``<|beginoftext|>`` = 2 (BOS) — then the 256 byte symbols
    (3..258, in code-point order of their ByteLevel characters), then the merges, up to
    `vocab_size` ids in all (fewer if the corpus runs out of pairs seen `min_frequency` times).
    The config names ``bos_token``, ``eos_token`` and ``pad_token`` (each must be one of the
    special tokens), so ``AutoTokenizer.from_pretrained(out_dir)`` has bos/eos/pad ids; nothing
    is added automatically when encoding.

    Deterministic: files are read in the given order and BPE training breaks ties by pair ids, so
    the same files and settings give a byte-identical ``tokenizer.json``. BPE training draws no
    random numbers; `seed` is only recorded (in ``sumi_tokenizer_training.json``) for bookkeeping.

    Atomic: the files are written to a hidden folder next to `out_dir` and renamed into place; an
    existing non-empty `out_dir` needs ``overwrite=True``, which replaces only a tokenizer folder.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    paths = [Path(f) for f in files]
    _check_training_files(paths)
    out = Path(out_dir)
    check_target(out, overwrite=overwrite, may_replace=why_not_replaceable, what=_WHAT)
    if int(min_frequency) < 0:
        raise ValueError(f"min_frequency must be >= 0, got {min_frequency}")
    special_tokens = list(special_tokens)
    if len(set(special_tokens)) != len(special_tokens):
        raise ValueError(f"duplicate special tokens: {special_tokens}")
    for role, token in (("bos_token", bos_token), ("eos_token", eos_token), ("pad_token", pad_token)):
        if token not in special_tokens:
            raise ValueError(f"{role}={token!r} is not one of the special tokens {special_tokens}")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(special_tokens) + len(alphabet):
        raise ValueError(
            f"vocab_size={vocab_size} is too small: a byte-level BPE needs at least "
            f"{len(special_tokens) + len(alphabet)} ids ({len(special_tokens)} specials + 256 bytes)"
        )

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=int(vocab_size),
        min_frequency=int(min_frequency),
        special_tokens=special_tokens,
        initial_alphabet=sorted(alphabet),
        show_progress=False,
    )
    tok.train_from_iterator(_iter_texts(paths), trainer=trainer)
    for i, s in enumerate(special_tokens):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos_token,
        eos_token=eos_token,
        pad_token=pad_token,
        clean_up_tokenization_spaces=False,
    )
    with atomic_folder(out, overwrite=overwrite, may_replace=why_not_replaceable, what=_WHAT) as tmp:
        fast.save_pretrained(str(tmp))
        _write_training_info(
            tmp,
            tok,
            paths,
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            seed=seed,
            special_tokens=special_tokens,
            roles=(bos_token, eos_token, pad_token),
        )
    return fast


def _write_training_info(
    folder: Path,
    tok,
    paths: Sequence[Path],
    *,
    vocab_size: int,
    min_frequency: int,
    seed: int,
    special_tokens: Sequence[str],
    roles: tuple[str, str, str],
) -> None:
    import tokenizers

    bos_token, eos_token, pad_token = roles
    info = {
        "model": "byte-level BPE",
        "vocab_size_requested": int(vocab_size),
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "min_frequency": int(min_frequency),
        "seed": int(seed),
        "special_tokens": {s: i for i, s in enumerate(special_tokens)},
        "bos_token": bos_token,
        "eos_token": eos_token,
        "pad_token": pad_token,
        "files": [{"path": os.fspath(p), "bytes": p.stat().st_size} for p in paths],
        "tokenizers_version": tokenizers.__version__,
    }
    (folder / TRAINING_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
