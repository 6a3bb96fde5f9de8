"""Sumi's tokenizer: OLMo's dolma2 BPE with id 100256 serving as `<|beginoftext|>` (spec §7).

The dolma2 `tokenizer.json` ships inside the package (`assets/tokenizers/dolma2/tokenizer.json.gz`,
byte-identical to the upstream file once decompressed), so `load_tokenizer("dolma2")` works offline
on any machine. In the plain file id 100256 is the unused placeholder `<|extra_id_0|>`; Sumi uses
that id as its BOS, so on load it is renamed `<|beginoftext|>` and marked special, and the roles
of the official Sumi `tokenizer_config.json` are set: bos `<|beginoftext|>` (100256), eos and unk
`<|endoftext|>` (100257), pad `<|pad|>` (100277), `model_max_length` 65536. Nothing is added
automatically (no BOS/EOS post-processor): prepend BOS / append EOS yourself. The converted JSON
is cached (`$SUMI_CACHE_DIR`, default `~/.cache/sumi`) so later loads just read it; an unwritable
cache only costs time.

```python
>>> from sumi import load_tokenizer
>>> tok = load_tokenizer("dolma2")
>>> tok("Hello world").input_ids, tok.bos_token_id
([9906, 1917], 100256)
>>> tok.save_pretrained("my_tok")  # AutoTokenizer.from_pretrained("my_tok") gives the same roles
```
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from .atomic import write_text_atomic

DOLMA2 = "dolma2"
BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, UNK_TOKEN = "<|beginoftext|>", "<|endoftext|>", "<|pad|>", "<|endoftext|>"
BOS_ID, EOS_ID, PAD_ID = 100256, 100257, 100277
VOCAB_SIZE = 100278
MODEL_MAX_LENGTH = 65536
DOLMA2_PLACEHOLDER = "<|extra_id_0|>"  # id 100256 in the upstream file
DOLMA2_SHA256 = "3ca996cca8afea58b34e95c353e859333592642a5e51d695d7a6dbbaf692dfe9"  # of the decompressed file

ASSETS = Path(__file__).parent / "assets"
BUNDLED_DOLMA2 = ASSETS / "tokenizers" / "dolma2" / "tokenizer.json.gz"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


# ----------------------------------------------------------------------------- the bundled file
def bundled_tokenizer_bytes() -> bytes:
    """The bundled dolma2 `tokenizer.json`, decompressed: the exact bytes of the upstream file."""
    return gzip.decompress(BUNDLED_DOLMA2.read_bytes())


def _read_tokenizer_file(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def cache_dir() -> Path:
    """Where sumi caches derived files: `$SUMI_CACHE_DIR`, else `$XDG_CACHE_HOME/sumi`, else `~/.cache/sumi`."""
    if os.environ.get("SUMI_CACHE_DIR"):
        return Path(os.environ["SUMI_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sumi"


# ----------------------------------------------------------------------------- dolma2 -> Sumi
_CONVERSION = "v1"  # bump when `_to_sumi_json` changes, so that stale cached files are not reused


def is_dolma2_vocabulary(tokenizer: Any) -> bool:
    """True for a dolma2-family tokenizer (100,278 ids, `<|endoftext|>` at 100257, `<|pad|>` at
    100277, `<|extra_id_0|>` or `<|beginoftext|>` at 100256). Accepts a `tokenizers.Tokenizer` or a
    transformers fast tokenizer."""
    backend = _backend(tokenizer)
    return (
        backend.get_vocab_size(with_added_tokens=True) == VOCAB_SIZE
        and backend.id_to_token(EOS_ID) == EOS_TOKEN
        and backend.id_to_token(PAD_ID) == PAD_TOKEN
        and backend.id_to_token(BOS_ID) in (DOLMA2_PLACEHOLDER, BOS_TOKEN)
    )


def _is_dolma2_json(d: dict) -> bool:
    added = {a.get("id"): a.get("content") for a in d.get("added_tokens", []) if isinstance(a, dict)}
    vocab = d.get("model", {}).get("vocab")
    size = len(set(vocab.values()) | set(added)) if isinstance(vocab, dict) else None
    return (
        size == VOCAB_SIZE
        and added.get(EOS_ID) == EOS_TOKEN
        and added.get(PAD_ID) == PAD_TOKEN
        and added.get(BOS_ID) in (DOLMA2_PLACEHOLDER, BOS_TOKEN)
    )


LETTER_PATTERN = r"\p{L}"  # every Unicode letter: what split_letters isolates


def split_digits(tokenizer: Any) -> Any:
    """Make `tokenizer` write every number digit by digit (a `Digits` pre-tokenizer in front of its
    own), in place; returns it. "57" and " 57" then share the tokens 5, 7, so a number reads the
    same in a prompt and in an answer, and arithmetic works digit-wise (as LLaMA's tokenizer does).
    Saved with the tokenizer (tokenizer.json). Idempotent."""
    from tokenizers import pre_tokenizers

    return _prepend_pre_tokenizer(tokenizer, pre_tokenizers.Digits(individual_digits=True), "Digits(")


def split_letters(tokenizer: Any) -> Any:
    """Make `tokenizer` write every letter as its own token (a `Split` on each Unicode letter in
    front of its own pre-tokenizer), in place; returns it. A word then reads as its spelling, so
    copying and upper-casing work letter by letter and carry over to words never seen in training
    ("cat" -> c a t, "CAT" -> C A T; a space is its own token). Special tokens are untouched.
    Saved with the tokenizer (tokenizer.json). Idempotent."""
    from tokenizers import Regex, pre_tokenizers

    return _prepend_pre_tokenizer(tokenizer, pre_tokenizers.Split(Regex(LETTER_PATTERN), "isolated"), LETTER_PATTERN)


def _prepend_pre_tokenizer(tokenizer: Any, pre: Any, marker: str) -> Any:
    """Put `pre` in front of `tokenizer`'s pre-tokenizer unless one whose repr contains `marker` is there."""
    from tokenizers import pre_tokenizers

    backend = _backend(tokenizer)
    current = backend.pre_tokenizer
    if marker in repr(current):
        return tokenizer
    backend.pre_tokenizer = pre if current is None else pre_tokenizers.Sequence([pre, current])
    return tokenizer


def _backend(tokenizer: Any) -> Tokenizer:
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if isinstance(backend, Tokenizer):
        return backend
    raise TypeError(f"expected a tokenizers.Tokenizer or a transformers fast tokenizer, got {type(tokenizer).__name__}")


def _to_sumi_json(d: dict) -> str:
    """The dolma2 tokenizer (parsed JSON) with id 100256 renamed `<|beginoftext|>` (special), and
    no padding / truncation set, as a JSON string."""
    if not _is_dolma2_json(d):
        raise ValueError(
            f"not a dolma2 tokenizer: expected {VOCAB_SIZE} ids with {EOS_TOKEN} at {EOS_ID}, "
            f"{PAD_TOKEN} at {PAD_ID} and {DOLMA2_PLACEHOLDER} or {BOS_TOKEN} at {BOS_ID}"
        )
    for entry in d["added_tokens"]:
        if entry.get("id") == BOS_ID:
            entry["content"], entry["special"] = BOS_TOKEN, True
    vocab = d["model"]["vocab"]
    if vocab.get(DOLMA2_PLACEHOLDER) == BOS_ID:
        del vocab[DOLMA2_PLACEHOLDER]
    vocab[BOS_TOKEN] = BOS_ID
    d["padding"] = None
    d["truncation"] = None
    return json.dumps(d, ensure_ascii=False)


def _cached_sumi_file(key: str) -> Path:
    return cache_dir() / "tokenizers" / f"sumi-dolma2-{key[:16]}-{_CONVERSION}.json"


def _sumi_source(raw: bytes | None, key: str, parsed: dict | None = None) -> Path | str:
    """Sumi's tokenizer JSON for the dolma2 file `raw` (sha256 `key`): the path of a cached copy
    (written on first use; loading a file skips a deep copy of the backend), or, if the cache is
    not writable, the JSON string."""
    path = _cached_sumi_file(key)
    if path.is_file() and path.stat().st_size > 0:
        return path
    if parsed is None:
        parsed = json.loads(raw if raw is not None else bundled_tokenizer_bytes())
    sumi_json = _to_sumi_json(parsed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(sumi_json, encoding="utf-8")
        os.replace(tmp, path)  # atomic: concurrent loaders never see a half-written file
        return path
    except OSError:
        return sumi_json


def _wrap(source: Path | str | Tokenizer, **roles: Any) -> PreTrainedTokenizerFast:
    """A transformers fast tokenizer from a tokenizer.json path, a JSON string or a backend."""
    if isinstance(source, Path):
        return PreTrainedTokenizerFast(tokenizer_file=str(source), clean_up_tokenization_spaces=False, **roles)
    if isinstance(source, str):
        source = Tokenizer.from_str(source)
    return PreTrainedTokenizerFast(tokenizer_object=source, clean_up_tokenization_spaces=False, **roles)


_SUMI_ROLES = dict(
    bos_token=BOS_TOKEN,
    eos_token=EOS_TOKEN,
    pad_token=PAD_TOKEN,
    unk_token=UNK_TOKEN,
    model_max_length=MODEL_MAX_LENGTH,
)


def make_sumi_tokenizer(tokenizer: Any = DOLMA2) -> PreTrainedTokenizerFast:
    """Sumi's tokenizer built from a dolma2 tokenizer: a `tokenizers.Tokenizer`, a transformers fast
    tokenizer, a path to a `tokenizer.json` (or `.json.gz`), or the name "dolma2" (the bundled copy).

    Id 100256 becomes the special token `<|beginoftext|>`; bos 100256, eos 100257, pad 100277,
    unk `<|endoftext|>`, `model_max_length` 65536, nothing added automatically. The result saves
    with `save_pretrained(dir)` and reloads with `AutoTokenizer.from_pretrained(dir)` unchanged.
    Converted files are cached under `cache_dir()` (keyed by the source file's sha256).
    """
    if isinstance(tokenizer, (str, os.PathLike)):
        if os.fspath(tokenizer) == DOLMA2 and not Path(tokenizer).exists():
            source = _sumi_source(None, DOLMA2_SHA256)
        else:
            raw = _read_tokenizer_file(Path(tokenizer))
            source = _sumi_source(raw, hashlib.sha256(raw).hexdigest())
    else:
        backend = _backend(tokenizer)
        if not is_dolma2_vocabulary(backend):
            raise ValueError(
                "make_sumi_tokenizer needs the dolma2 vocabulary (100,278 ids with <|endoftext|> at "
                f"{EOS_ID} and <|pad|> at {PAD_ID}); got a tokenizer of "
                f"{backend.get_vocab_size(with_added_tokens=True)} ids"
            )
        source = _to_sumi_json(json.loads(backend.to_str()))  # in memory: objects vary, not worth caching
    return _wrap(source, **_SUMI_ROLES)


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, save_directory: str | os.PathLike) -> tuple[str, ...]:
    """Write `tokenizer.json` + `tokenizer_config.json` into `save_directory` (created if needed), so
    that `AutoTokenizer.from_pretrained(save_directory)` and `load_tokenizer(save_directory)` give
    the same tokenizer back (for Sumi's: bos 100256, eos 100257, pad 100277). A chat template stays
    inside `tokenizer_config.json`; how this copy was loaded (offline, from a local folder) is not
    recorded, so the folder loads the same on a machine with a hub."""
    Path(save_directory).mkdir(parents=True, exist_ok=True)
    files = tuple(tokenizer.save_pretrained(str(save_directory), save_jinja_files=False))
    config_path = Path(save_directory) / "tokenizer_config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        kept = {k: v for k, v in config.items() if k not in _LOAD_OPTIONS}
        if kept != config:
            write_text_atomic(config_path, json.dumps(kept, indent=2, ensure_ascii=False) + "\n")
    return files


# `from_pretrained` options that transformers copies into tokenizer_config.json on save
_LOAD_OPTIONS = ("local_files_only", "is_local", "cache_dir", "force_download", "token", "revision", "subfolder")


# ----------------------------------------------------------------------------- loading
def has_tokenizer_files(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds HF tokenizer files (`tokenizer.json` or `tokenizer_config.json`)."""
    return any((Path(folder) / name).is_file() for name in TOKENIZER_FILES)


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~")) and not any(c in name for c in "\\: ")


def load_tokenizer(
    path_or_name: str | os.PathLike = DOLMA2, *, padding_side: str | None = None
) -> PreTrainedTokenizerFast:
    """Load a fast tokenizer (what `AutoTokenizer` gives in transformers 5).

    `path_or_name` may be:
      * "dolma2": Sumi's tokenizer from the copy bundled with sumi (offline, no download);
      * a folder with HF tokenizer files (`tokenizer.json` [+ `tokenizer_config.json`]);
      * a `tokenizer.json` file (or a gzipped `tokenizer.json.gz`);
      * a Hub repo id ("owner/name"), when online or cached.
    A dolma2-vocabulary tokenizer that carries no bos/eos roles (the bare upstream file, or a folder
    without a config naming them) is turned into Sumi's (`make_sumi_tokenizer`); otherwise the
    folder's own `tokenizer_config.json` is respected. `padding_side` ("left"/"right") is set if given.
    """
    name = os.fspath(path_or_name)
    path = Path(name).expanduser()
    if name == DOLMA2 and not path.exists():
        tok = make_sumi_tokenizer(DOLMA2)
    elif path.is_file():
        raw = _read_tokenizer_file(path)
        key = hashlib.sha256(raw).hexdigest()
        if _cached_sumi_file(key).is_file():  # converted before: a dolma2 file
            tok = _wrap(_cached_sumi_file(key), **_SUMI_ROLES)
        else:
            try:
                parsed = json.loads(raw)
                if not isinstance(parsed, dict):
                    raise ValueError("not a JSON object")
                if _is_dolma2_json(parsed):
                    tok = _wrap(_sumi_source(raw, key, parsed), **_SUMI_ROLES)
                else:
                    tok = _wrap(raw.decode("utf-8"))
            except Exception as e:  # JSON errors, and tokenizers' own exception type for malformed files
                raise ValueError(f"{name!r} is not a valid tokenizer.json file: {' '.join(str(e).split())}") from e
    elif path.is_dir():
        if not has_tokenizer_files(path):
            raise ValueError(
                f"no tokenizer in {name!r}: the folder has neither tokenizer.json nor tokenizer_config.json"
            )
        if not (path / "tokenizer_config.json").is_file():
            tok = load_tokenizer(path / "tokenizer.json")
        else:
            tok = AutoTokenizer.from_pretrained(str(path))
            if (
                getattr(tok, "backend_tokenizer", None) is not None
                and is_dolma2_vocabulary(tok)
                and (tok.bos_token_id is None or tok.eos_token_id is None)
            ):
                tok = make_sumi_tokenizer(tok)
    elif _looks_like_hub_id(name):
        try:
            tok = AutoTokenizer.from_pretrained(name)
        except OSError as e:
            raise ValueError(
                f"cannot load the tokenizer {name!r} from the Hugging Face Hub"
                f"{' (offline: HF_HUB_OFFLINE is set)' if _offline() else ''}: {' '.join(str(e).split())}"
            ) from e
    else:
        raise ValueError(
            f"unknown tokenizer {name!r}: not 'dolma2', not a folder with tokenizer files, "
            "not a tokenizer.json file, not a Hub id"
        )
    if padding_side is not None:
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        tok.padding_side = padding_side
    return tok


def _offline() -> bool:
    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return True
    except Exception:  # pragma: no cover - very old huggingface_hub
        pass
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


# ----------------------------------------------------------------------------- byte fallback
def encode_user_text(tokenizer: Any, text: str) -> list[int]:
    """Ids of user text (a prompt, a document, a benchmark question): plain text everywhere, so the
    literal text of a special token (`<|endoftext|>`) is encoded as its characters, as `data prepare`
    encodes documents. Special tokens enter only as ids (BOS, the EOS/BOS anchors) or through a chat
    template. No BOS is added."""
    if isinstance(tokenizer, ByteTokenizer):
        return tokenizer.encode(text)
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids)


class ByteTokenizer:
    """The fallback for models without a tokenizer (e.g. the `sumi-tiny` preset, vocabulary 256):
    UTF-8 bytes as ids (id = byte value). Decoding turns ids < 256 back into bytes (invalid UTF-8
    becomes U+FFFD) and shows any id >= 256 as `<|id|>`; `skip_special_tokens` drops the model's
    bos/eos/pad ids. Needs `vocab_size >= 256`."""

    def __init__(
        self,
        vocab_size: int,
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
    ):
        if vocab_size < 256:
            raise ValueError(f"a byte-level fallback needs vocab_size >= 256 (one id per byte), got {vocab_size}")
        self.vocab_size = vocab_size
        self.bos_token_id, self.eos_token_id, self.pad_token_id = bos_token_id, eos_token_id, pad_token_id

    @property
    def all_special_ids(self) -> list[int]:
        return [i for i in (self.bos_token_id, self.eos_token_id, self.pad_token_id) if i is not None]

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids, skip_special_tokens: bool = False, **_: Any) -> str:
        ids = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
        if skip_special_tokens:
            special = set(self.all_special_ids)
            ids = [i for i in ids if i not in special]
        out, run = [], bytearray()
        for i in ids:
            if 0 <= i < 256:
                run.append(i)
            else:
                out.append(run.decode("utf-8", errors="replace"))
                run = bytearray()
                out.append(f"<|{i}|>")
        out.append(run.decode("utf-8", errors="replace"))
        return "".join(out)

    def __len__(self) -> int:
        return self.vocab_size


__all__ = [
    "split_digits",
    "split_letters",
    "encode_user_text",
    "DOLMA2",
    "BOS_TOKEN",
    "EOS_TOKEN",
    "PAD_TOKEN",
    "UNK_TOKEN",
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "VOCAB_SIZE",
    "MODEL_MAX_LENGTH",
    "DOLMA2_SHA256",
    "BUNDLED_DOLMA2",
    "bundled_tokenizer_bytes",
    "is_dolma2_vocabulary",
    "make_sumi_tokenizer",
    "save_tokenizer",
    "cache_dir",
    "has_tokenizer_files",
    "load_tokenizer",
    "ByteTokenizer",
]
