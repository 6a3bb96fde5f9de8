"""A checkpoint loads only if its files hold exactly the weights its config.json describes; broken
files, pickles and non-finite weights are clear errors naming what is wrong (issue 14 items 4, 5, 10)."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from sumi import SumiConfig, SumiForMaskGeneration
from sumi.loading import load, load_safetensors_folder, nonfinite_weights

TINY = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=4,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=64,
    bos_token_id=1,
    eos_token_id=2,
)


def _save(folder, layers=4, **overrides):
    torch.manual_seed(0)
    model = SumiForMaskGeneration(SumiConfig(**dict(TINY, num_hidden_layers=layers, **overrides)))
    model.save_pretrained(folder)
    return {k: v.clone() for k, v in load_file(folder / "model.safetensors").items()}


def _rewrite(folder, state):
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _set_config(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_config_with_fewer_layers_than_the_weights_is_an_error(tmp_path):
    _save(tmp_path, layers=8)
    _set_config(tmp_path, num_hidden_layers=4)
    with pytest.raises(
        ValueError,
        match=r"does not match its config.json: has \d+ weight\(s\) the model does not "
        r"have: model.layers.4",
    ):
        load(tmp_path)


def test_config_with_more_layers_than_the_weights_is_an_error(tmp_path):
    _save(tmp_path, layers=2)
    _set_config(tmp_path, num_hidden_layers=4)
    with pytest.raises(ValueError, match=r"lacks \d+ weight\(s\) of the model: model.layers.2"):
        load(tmp_path)


def test_extra_integer_and_misshaped_tensors_are_errors_naming_them(tmp_path):
    state = _save(tmp_path)
    _rewrite(tmp_path, dict(state, **{"extra.weight": torch.zeros(2)}))
    with pytest.raises(ValueError, match=r"does not have: extra.weight"):
        load_safetensors_folder(tmp_path)
    bad = dict(state)
    bad["model.norm.weight"] = torch.ones(32, dtype=torch.int32)
    _rewrite(tmp_path, bad)
    with pytest.raises(ValueError, match=r"not floating point: model.norm.weight \(I32\)"):
        load_safetensors_folder(tmp_path)
    bad = dict(state)
    bad["lm_head.weight"] = torch.zeros(64, 16)
    _rewrite(tmp_path, bad)
    with pytest.raises(ValueError, match=r"wrong shape: lm_head.weight \[64, 16\] \(the config wants \[64, 32\]\)"):
        load_safetensors_folder(tmp_path)


def test_nonfinite_weights_are_found_with_verify(tmp_path):
    state = _save(tmp_path)
    w = state["model.layers.1.mlp.up_proj.weight"]
    w[3, 5] = math.nan
    state["model.norm.weight"][0] = math.inf
    _rewrite(tmp_path, state)
    model, _ = load(tmp_path)  # loading stays lazy by default ...
    assert nonfinite_weights(model) == ["model.layers.1.mlp.up_proj.weight", "model.norm.weight"]
    with pytest.raises(
        ValueError,
        match=r"2 weight\(s\) hold NaN or infinity: model.layers.1.mlp.up_proj.weight, "
        r"model.norm.weight",
    ):
        load(tmp_path, verify=True)  # ... and verify=True reads them all
    _save(tmp_path)
    model, _ = load(tmp_path, verify=True)
    assert nonfinite_weights(model) == []


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, b"garbage that is no safetensors header at all", "truncate"])
def test_unreadable_weight_files_name_the_file(tmp_path, content):
    _save(tmp_path)
    file = tmp_path / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2] if content == "truncate" else content)
    with pytest.raises(ValueError, match=r"model.safetensors' is not a readable safetensors file"):
        load(tmp_path)


def test_pickled_weights_are_refused(tmp_path):
    state = _save(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"only pickled PyTorch weights \(pytorch_model.bin\).*safetensors"):
        load(tmp_path)
    (tmp_path / "pytorch_model.bin").unlink()
    with pytest.raises(ValueError, match="has no weights"):
        load(tmp_path)


def test_broken_config_and_index_name_the_file(tmp_path):
    _save(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2, 3]")
    with pytest.raises(ValueError, match=r"config.json' holds a JSON list, expected an object"):
        load(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config.json' is not valid JSON"):
        load(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "sumi"}')
    with pytest.raises(ValueError, match=r"config.json' does not describe a model: it lacks vocab_size, hidden_size"):
        load(tmp_path)
    _save(tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / "model-00001-of-00001.safetensors")
    index = tmp_path / "model.safetensors.index.json"
    index.write_text("{broken")
    with pytest.raises(ValueError, match=r"index.json' is not valid JSON"):
        load(tmp_path)
    index.write_text(json.dumps({"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}}))
    with pytest.raises(ValueError, match=r"names shard\(s\) missing from the folder: model-00002"):
        load(tmp_path)
    index.write_text(json.dumps({"metadata": {}}))
    with pytest.raises(ValueError, match="no valid weight_map"):
        load(tmp_path)


def test_broken_generation_config_names_the_file(tmp_path):
    _save(tmp_path)
    path = tmp_path / "generation_config.json"
    for text, match in (("{broken", "is not valid JSON"), ("[1, 2]", "holds a JSON list")):
        path.write_text(text)
        with pytest.raises(ValueError, match=rf"generation_config.json' {match}"):
            load(tmp_path)
    path.unlink()
    assert load(tmp_path)[0].config.num_hidden_layers == 4  # the file is optional


def test_info_verify_reports_nonfinite_and_mismatched_weights(tmp_path, capsys):
    from sumi.cli import main

    state = _save(tmp_path)
    assert main(["info", str(tmp_path), "--verify"]) == 0
    assert "tensors match the config, all finite" in capsys.readouterr().out
    state["model.norm.weight"][1] = math.nan
    _rewrite(tmp_path, state)
    assert main(["info", str(tmp_path)]) == 0  # without --verify no weight is read
    capsys.readouterr()
    assert main(["info", str(tmp_path), "--verify"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "NaN or infinity: model.norm.weight" in err
    _set_config(tmp_path, num_hidden_layers=3)
    assert main(["info", str(tmp_path), "--verify"]) == 2
    assert "does not have: model.layers.3" in capsys.readouterr().err
    (tmp_path / "config.json").write_text('{"model_type": "sumi"}')  # would show a default 7B config
    assert main(["info", str(tmp_path)]) == 2
    assert "lacks vocab_size" in capsys.readouterr().err
