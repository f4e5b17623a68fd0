"""Keras/TensorFlow BitNet training: quantisers, loss going down, progress, time budget, and the exported
Hugging Face checkpoint against transformers (oracle) and our converted reference."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from tellme.models.default_model import default_model_dir

VERSES = [
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void; and darkness was upon the face of the deep.",
    "And God said, Let there be light: and there was light.",
    "And God saw the light, that it was good: and God divided the light from the darkness.",
    "And God called the light Day, and the darkness he called Night.",
    "And the evening and the morning were the first day.",
]


@pytest.fixture(scope="module")
def tf_env():
    """TensorFlow and Keras with a small thread budget; skips only when the train extra is absent."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("keras")
    from tellme.models.train.runtime import configure_tensorflow

    configure_tensorflow()
    import keras

    keras.utils.set_random_seed(0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A tiny corpus folder in make_corpus.sh's layout: chapters separated by blank lines."""
    folder = tmp_path_factory.mktemp("corpus")
    chapters = ["\n".join(VERSES[i:] + VERSES[:i]) for i in range(len(VERSES))] * 8
    (folder / "train.txt").write_text("\n\n".join(chapters) + "\n")
    (folder / "val.txt").write_text("\n\n".join(chapters[:3]) + "\n")
    return folder


@pytest.fixture(scope="module")
def trained(tf_env, corpus, tmp_path_factory):
    """A tiny model trained for 40 steps, its loss history, progress text and exported checkpoint."""
    from tellme.models.config import ModelConfig
    from tellme.models.train.data import WindowSampler, load_split, train_tokenizer
    from tellme.models.train.export import export_checkpoint
    from tellme.models.train.loop import TrainSettings, train
    from tellme.models.train.model import BitNetLM
    from tellme.models.train.progress import Progress

    tokenizer = train_tokenizer((corpus / "train.txt").read_text().splitlines(keepends=True), 300)
    shape = ModelConfig(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    model = BitNetLM(shape)
    settings = TrainSettings(batch_size=8, seq_len=32, peak_lr=3e-3, warmup_steps=5, max_steps=40,
                             minutes=5.0, log_every=5)
    stream = io.StringIO()
    sampler = WindowSampler(load_split(tokenizer, corpus / "train.txt"), settings.seq_len, seed=1)
    result = train(model, sampler, settings, progress=Progress(settings.max_steps, 300.0, stream))
    checkpoint = export_checkpoint(model, tokenizer, tmp_path_factory.mktemp("export") / "hf")
    return model, tokenizer, result, stream.getvalue(), checkpoint


def test_quantisers_round_like_numpy_reference_and_pass_gradients(tf_env):
    import tensorflow as tf

    from tellme.models.quant import act_quant, weight_quant
    from tellme.models.train.quant import act_quant_ste, weight_quant_ste

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 40)).astype(np.float32) * 3
    xq, xs = act_quant(x)
    np.testing.assert_array_equal(act_quant_ste(tf.constant(x)).numpy(), xq.astype(np.float32) / xs)
    w = rng.normal(size=(24, 40)).astype(np.float32) * 0.02
    wq, ws = weight_quant(w)
    got = weight_quant_ste(tf.constant(w)).numpy()
    np.testing.assert_allclose(got, wq.astype(np.float32) / ws, rtol=1e-6)
    assert set(np.unique(np.round(got * ws))) <= {-1.0, 0.0, 1.0}
    upstream = tf.constant(rng.normal(size=x.shape).astype(np.float32))
    for fn, value in ((act_quant_ste, x), (weight_quant_ste, x)):
        v = tf.constant(value)
        with tf.GradientTape() as tape:
            tape.watch(v)
            y = tf.reduce_sum(fn(v) * upstream)
        np.testing.assert_array_equal(tape.gradient(y, v).numpy(), upstream.numpy())


def test_parameter_count_matches_keras_variables(trained):
    model = trained[0]
    count = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert count == model.model_shape.parameter_count()


def test_a_few_steps_lower_the_loss_and_print_progress(trained):
    _, _, result, text, _ = trained
    losses = [loss for _, loss in result.history]
    assert result.steps == 40 and result.tokens == 40 * 8 * 32
    assert np.mean(losses[-5:]) < losses[0] - 1.0, losses
    lines = [line for line in text.splitlines() if line.startswith("step")]
    assert len(lines) == 9  # step 1, then every 5 steps
    assert all(word in lines[-1] for word in ("loss", "tok/s", "elapsed", "eta"))


def test_training_stops_at_its_time_budget(tf_env, corpus):
    from tellme.models.config import ModelConfig
    from tellme.models.train.data import WindowSampler, load_split, train_tokenizer
    from tellme.models.train.loop import TrainSettings, train
    from tellme.models.train.model import BitNetLM
    from tellme.models.train.progress import Progress

    tokenizer = train_tokenizer(VERSES, 280)
    shape = ModelConfig(vocab_size=280, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)
    settings = TrainSettings(batch_size=2, seq_len=16, max_steps=10_000, minutes=0.05)
    sampler = WindowSampler(load_split(tokenizer, corpus / "val.txt"), settings.seq_len)
    result = train(BitNetLM(shape), sampler, settings, progress=Progress(10_000, 3.0, io.StringIO()))
    assert 1 <= result.steps < 10_000
    assert result.seconds < 3.0 + 10.0


def test_export_writes_a_transformers_bitnet_checkpoint(trained):
    checkpoint = trained[4]
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["model_type"] == "bitnet" and config["architectures"] == ["BitNetForCausalLM"]
    assert config["quantization_config"] == {
        "quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online"}
    assert config["rope_parameters"]["rope_theta"] == config["rope_theta"]
    assert config["hidden_act"] == "relu2" and config["tie_word_embeddings"] is False
    from safetensors.numpy import load_file

    tensors = load_file(checkpoint / "model.safetensors")
    assert tensors["model.layers.1.self_attn.k_proj.weight"].shape == (2 * 16, 64)
    assert tensors["model.layers.0.mlp.down_proj.weight"].shape == (64, 96)
    assert tensors["lm_head.weight"].shape == (300, 64)
    assert len(tensors) == 2 * 11 + 3
    assert (checkpoint / "tokenizer.json").is_file() and (checkpoint / "tokenizer_config.json").is_file()


def test_export_matches_transformers_and_the_converted_reference(trained, tmp_path):
    from oracle_utils import assert_oracle_close, hf_logits, load_oracle

    from tellme.models.convert import convert_checkpoint
    from tellme.models.reference import ReferenceModel

    model, tokenizer, _, _, checkpoint = trained
    text = " ".join(VERSES) * 3
    tokens = tokenizer.encode(text).ids[:96]
    assert len(tokens) == 96
    theirs = hf_logits(load_oracle(checkpoint), tokens)
    convert_checkpoint(checkpoint, tmp_path / "model", quiet=True)
    ours = ReferenceModel.load(tmp_path / "model").logits(tokens)
    assert_oracle_close(ours, theirs)
    keras_logits = np.asarray(model(np.asarray([tokens], dtype=np.int32)))[0]
    assert_oracle_close(keras_logits, theirs)


def test_bundled_default_model_is_a_converted_folder_with_a_card():
    folder = default_model_dir()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["config"]["hidden_act"] == "relu2"
    assert (folder / "tokenizer.json").is_file() and (folder / "MODEL_CARD.md").is_file()
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    assert size <= 10 * 1024 * 1024


def test_missing_bundled_model_is_a_user_error(monkeypatch, tmp_path):
    from tellme.models import default_model
    from tellme.models.errors import UserError

    monkeypatch.setattr(default_model, "BUNDLED", tmp_path / "default")
    with pytest.raises(UserError, match="--model"):
        default_model.default_model_dir()
