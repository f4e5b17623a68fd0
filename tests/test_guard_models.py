"""Causes 6 and 7 of issue 16: a model folder is checked in one place when it is opened (manifest, config
types and ranges, the tensors against the config, every file's sha256), and convert refuses what would
break later (a config.json that is not an object, a value of the wrong type or range, NaN weights).

Tables of damaged model folders and checkpoints run through every command that reads one: each is one
line with exit 2, and nothing is written (not the output, not the C-sim cache, not the input)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from guard_checks import changed, copy_model, edit_json, make_model, refused, replace_json, snapshot
from safetensors.numpy import load_file, save_file

from tellme.models.model_folder import open_model_folder, sha256_file
from tellme.models.synthetic import TINY, write_random_checkpoint


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    return make_model(tmp_path_factory.mktemp("models"))


def _manifest(edit):
    """An edit of manifest.json's data in place."""
    return lambda model: edit_json(model / "manifest.json", edit)


def _config(change: dict):
    return _manifest(lambda manifest: manifest["config"].update(change))


def _flip_a_weight_byte(model: Path) -> None:
    data = bytearray((model / "weights.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (model / "weights.safetensors").write_bytes(bytes(data))


def _files_emptied(edit):
    """Some damage, and the manifest's files table emptied so that no checksum can catch it."""
    def both(model: Path) -> None:
        edit(model)
        edit_json(model / "manifest.json", lambda m: m.update(files={}))
    return both


def _rehashed_tensor(name: str, make):
    """A tensor replaced and the manifest's checksum updated to match: only the tensor check can tell."""
    def edit(model: Path) -> None:
        tensors = load_file(str(model / "weights.safetensors"))
        tensors[name] = make(tensors[name])
        save_file(tensors, str(model / "weights.safetensors"))
        digest = sha256_file(model / "weights.safetensors")
        edit_json(model / "manifest.json", lambda m: m["files"].update({"weights.safetensors": digest}))
    return edit


# damage (a function of the model folder) -> words of the error. The config edits leave every checksum
# valid: only the checks of the config and of the tensors against it can refuse them.
BAD_MODELS = {
    "fewer layers in the config": (_config({"num_hidden_layers": 1}), "does not describe"),
    "more layers in the config": (_config({"num_hidden_layers": 3}), "lacks 'layers.2."),
    "another hidden_size": (_config({"hidden_size": 128}), "the config implies"),
    "tied embeddings claimed": (_config({"tie_word_embeddings": True}), "lm_head"),
    "a string for a number": (_config({"hidden_size": "120"}), "hidden_size must be an integer"),
    "a bool for a number": (_config({"num_hidden_layers": True}), "num_hidden_layers must be an integer"),
    "a negative eps": (_config({"rms_norm_eps": -1e-5}), "rms_norm_eps"),
    "a string eps": (_config({"rms_norm_eps": "1e-5"}), "rms_norm_eps"),
    "a huge context": (_config({"max_position_embeddings": 10**9}), "max_position_embeddings"),
    "a zero theta": (_config({"rope_theta": 0}), "rope_theta"),
    "an unknown activation": (_config({"hidden_act": "gelu"}), "hidden_act"),
    "a config that is a list": (_manifest(lambda m: m.update(config=[1, 2])), "config is not a JSON object"),
    "a config field missing": (_manifest(lambda m: m["config"].pop("head_dim")), "lacks ['head_dim']"),
    "a manifest that is a list": (lambda model: replace_json(model / "manifest.json", lambda m: [m]),
                                  "not a JSON object"),
    "files removed": (_manifest(lambda m: m.pop("files")), "does not list weights.safetensors"),
    "files emptied": (_manifest(lambda m: m.update(files={})), "does not list weights.safetensors"),
    "files a list": (_manifest(lambda m: m.update(files=["weights.safetensors"])), "does not list"),
    "a file outside the folder": (_manifest(lambda m: m["files"].update({"../ckpt/config.json": "0" * 64})),
                                  "not a file of the folder"),
    "a checksum that is no sha256": (_manifest(lambda m: m["files"].update({"weights.safetensors": "abc"})),
                                     "not a sha256"),
    "the tokenizer unlisted": (_manifest(lambda m: m["files"].pop("tokenizer.json")), "cannot be verified"),
    "another format version": (_manifest(lambda m: m.update(version=2)), "v2"),
    "a flipped weight byte": (_flip_a_weight_byte, "checksum"),
    "a flipped weight byte, files emptied": (_files_emptied(_flip_a_weight_byte), "does not list"),
    "a tensor of another shape, checksum updated": (
        _rehashed_tensor("layers.0.q_proj.tlmm", lambda t: t[:, :1]), "layers.0.q_proj.tlmm is U8 [120, 1, 18]"),
    "a tensor of another dtype, checksum updated": (
        _rehashed_tensor("norm", lambda t: t.astype(np.float64)), "norm is F64"),
    "invalid JSON": (lambda model: (model / "manifest.json").write_text("{"), "not readable JSON"),
    "no manifest": (lambda model: (model / "manifest.json").unlink(), "not a tellme model folder"),
}


# every command that reads a model folder, with its output under `out`
MODEL_COMMANDS = {
    "logits": lambda model, out: ["logits", "--model", model, "--tokens", "1,2", "--out", out / "l.npy"],
    "run": lambda model, out: ["run", "--model", model, "--prompt", "And the", "--max-new-tokens", "2"],
    "run-csim": lambda model, out: ["run", "--model", model, "--backend", "csim", "--prompt", "a",
                                    "--max-new-tokens", "1"],
    "chat": lambda model, out: ["run", "--chat", "--model", model, "--prompt", "a", "--max-new-tokens", "1"],
    "hls": lambda model, out: ["hls", "--model", model, "--out", out / "hls"],
    "build": lambda model, out: ["build", "--model", model, "--out", out / "design", "--dry-run"],
}


@pytest.mark.parametrize("bad", sorted(BAD_MODELS))
@pytest.mark.parametrize("command", sorted(MODEL_COMMANDS))
def test_damaged_model_folder(command, bad, models, tmp_path, capsys, monkeypatch):
    model = copy_model(models[1], tmp_path / "model")
    edit, words = BAD_MODELS[bad]
    edit(model)
    out = tmp_path / "out"
    monkeypatch.setenv("TELLME_CACHE", str(out / "cache"))
    before = snapshot(tmp_path)
    refused(capsys, [words], *MODEL_COMMANDS[command](model, out))
    assert changed(before, snapshot(tmp_path)) == set()


def test_the_bundled_and_converted_models_open(models):
    for path in (models[1], Path(__file__).parents[1] / "models" / "default"):
        folder = open_model_folder(path)
        assert folder.config.num_hidden_layers >= 1 and folder.tensor("norm").shape == (folder.config.hidden_size,)


# --- checkpoints: convert is the one command that reads them ---

def _hf(make):
    """config.json replaced by make(its data)."""
    return lambda ckpt: replace_json(ckpt / "config.json", make)


def _set(change: dict):
    return lambda ckpt: edit_json(ckpt / "config.json", lambda config: config.update(change))


def _tensor(name: str, value: float):
    def edit(ckpt: Path) -> None:
        tensors = load_file(str(ckpt / "model.safetensors"))
        tensors[name] = tensors[name].copy()
        tensors[name].reshape(-1)[5] = value
        save_file(tensors, str(ckpt / "model.safetensors"))
    return edit


# damage (a function of the checkpoint folder) -> words of the error
BAD_CHECKPOINTS = {
    "a config that is a list": (_hf(lambda c: [c]), "JSON list, not an object"),
    "a config that is a number": (_hf(lambda c: 3), "JSON int, not an object"),
    "a context of 1e12": (_set({"max_position_embeddings": 1e12}), "max_position_embeddings must lie in"),
    "a string for a number": (_set({"hidden_size": "120"}), "hidden_size must be an integer"),
    "a fractional layer count": (_set({"num_hidden_layers": 2.5}), "num_hidden_layers must be an integer"),
    "a negative eps": (_set({"rms_norm_eps": -1e-5}), "rms_norm_eps"),
    "a string for a bool": (_set({"tie_word_embeddings": "no"}), "tie_word_embeddings must be true or false"),
    "a negative token id": (_set({"eos_token_id": -3}), "eos_token_id"),
    "quantization_config a list": (_set({"quantization_config": [1]}), "quantization_config must be an object"),
    "rope_scaling a string": (_set({"rope_scaling": "linear"}), "rope_scaling must be an object"),
    "a zero head count": (_set({"num_attention_heads": 0}), "num_attention_heads must lie in"),
    "NaN in the embedding": (_tensor("model.embed_tokens.weight", np.nan), "NaN or infinite"),
    "infinity in a norm": (_tensor("model.layers.1.input_layernorm.weight", np.inf), "NaN or infinite"),
    "NaN in the LM head": (_tensor("lm_head.weight", np.nan), "NaN or infinite"),
}


@pytest.fixture(scope="module")
def online_checkpoint(tmp_path_factory) -> Path:
    """Latent (float) linears: the flavour where a NaN weight would be quantised into garbage."""
    return write_random_checkpoint(tmp_path_factory.mktemp("online") / "ckpt", "online", TINY, seed=4)


@pytest.mark.parametrize("bad", sorted(BAD_CHECKPOINTS))
def test_damaged_checkpoint(bad, models, tmp_path, capsys):
    ckpt = copy_model(models[0], tmp_path / "ckpt")
    edit, words = BAD_CHECKPOINTS[bad]
    edit(ckpt)
    before = snapshot(tmp_path)
    refused(capsys, [words], "convert", ckpt, tmp_path / "out")
    assert changed(before, snapshot(tmp_path)) == set()


def test_nan_in_latent_weights(online_checkpoint, tmp_path, capsys):
    ckpt = copy_model(online_checkpoint, tmp_path / "ckpt")
    _tensor("model.layers.0.mlp.up_proj.weight", np.nan)(ckpt)
    before = snapshot(tmp_path)
    refused(capsys, ["up_proj", "NaN"], "convert", ckpt, tmp_path / "out")
    assert changed(before, snapshot(tmp_path)) == set()
