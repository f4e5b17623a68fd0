"""The hls4ml plugin: Keras models of BitLinear / ReLU / RMSNorm layers through hls4ml's convert ->
compile -> predict, against a numpy model of the kernels (bit for bit) and Keras' predict (within the
stated float tolerances); the written project (kernel headers, testbench under ASan/UBSan); the kernels
under -Wall -Wextra -Werror; the docs example as written."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tellme.models import numerics
from tellme.models.quant import act_quant

ROOT = Path(__file__).resolve().parent.parent
U = 2.0**-24  # float32 unit roundoff
# A model of several layers vs Keras (docs/hls4ml.md): most outputs agree to float rounding, the rest
# move by int8 steps where an activation's rounding went the other way.
ROUNDING, AGREEING, STEPS = 1e-5, 0.95, 2e-2  # of the output range; share of outputs; of the output range


@pytest.fixture(scope="module")
def env():
    """TensorFlow, Keras and hls4ml with the plugin registered; skips (saying why) only without g++,
    which hls4ml's compile() needs."""
    if shutil.which("g++") is None:
        pytest.skip("hls4ml's compile() needs g++, which is not installed")
    from tellme.models.train.runtime import configure_tensorflow

    configure_tensorflow()
    import hls4ml
    import keras

    from tellme.hls import hls4ml_plugin

    hls4ml_plugin.register()
    keras.utils.set_random_seed(0)
    return hls4ml, keras


# --- the numpy model of the kernels: what hls4ml's predict must equal bit for bit ---


def ternary(layer) -> tuple[np.ndarray, np.float32]:
    """A Keras BitLinear's (Wq int32 [out, in], s_w), from the layer's own quantiser."""
    from tellme.models.train.quant import ternary_weights

    wq, scale = ternary_weights(layer.weight)
    return np.asarray(wq).astype(np.int32), np.float32(scale)


def int_part(layer, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(acc int [tokens, out], s_x * s_w float32 [tokens, 1]) of a BitLinear on x [tokens, in]."""
    wq, s_w = ternary(layer)
    xq, s_x = act_quant(x)
    return xq.astype(np.int64) @ wq.T, s_x * s_w


def bitlinear(layer, x: np.ndarray) -> np.ndarray:
    acc, scale = int_part(layer, x)
    return acc.astype(np.float32) / scale


def rms_norm(layer, x: np.ndarray) -> np.ndarray:
    return numerics.rms_norm(x, layer.weight.numpy(), layer.eps)


def assert_chained_close(y: np.ndarray, expected: np.ndarray) -> None:
    """A model of several layers against Keras (or another float path): at least AGREEING of the outputs
    within ROUNDING of the output range, every output within STEPS of it."""
    y = y.reshape(expected.shape)
    scale = np.abs(expected).max()
    diff = np.abs(y.astype(np.float64) - expected)
    assert np.mean(diff <= ROUNDING * scale) >= AGREEING, np.mean(diff <= ROUNDING * scale)
    assert diff.max() <= STEPS * scale, diff.max() / scale


def assert_layers_match_keras(model, trace: dict, inputs: dict) -> None:
    """Every named layer given the input the hls4ml model gave it (inputs: layer -> that input): a
    BitLinear's integer part exactly (round(y * s_x * s_w) is xq @ Wq^T), its float part and RMSNorm
    within their bounds of the Keras layer."""
    from tellme.models.train.layers import BitLinear

    for name, layer_in in inputs.items():
        layer = model.get_layer(name)
        layer_in = layer_in.reshape(-1, layer_in.shape[-1]).astype(np.float32)
        ours = trace[name].reshape(layer_in.shape[0], -1).astype(np.float64)
        keras_out = np.asarray(layer(layer_in), dtype=np.float32)
        if isinstance(layer, BitLinear):
            acc, scale = int_part(layer, layer_in)
            np.testing.assert_array_equal(np.rint(ours * scale), acc)
            bound = bitlinear_bound(layer, layer_in)
        else:
            bound = rms_bound(layer, layer_in)
        assert np.all(np.abs(ours - keras_out) <= bound + U * np.abs(keras_out)), name


def bitlinear_bound(layer, x: np.ndarray) -> np.ndarray:
    """How far Keras' float BitLinear (a float32 matmul of x_hat = xq / s_x and w_hat = Wq / s_w) may be from
    float(acc) / (s_x * s_w): the summation bound (n_in + 5) u sum |x_hat| |w_hat|, element-wise."""
    wq, s_w = ternary(layer)
    xq, s_x = act_quant(x)
    mass = np.abs(xq).astype(np.float64) @ np.abs(wq).T.astype(np.float64) / (s_x.astype(np.float64) * s_w)
    return (x.shape[-1] + 5) * U * mass


def rms_bound(layer, x: np.ndarray) -> np.ndarray:
    """RMSNorm: the sum of squares in another order and rsqrt for 1/sqrt: (n_in + 10) u |y|."""
    return (x.shape[-1] + 10) * U * np.abs(rms_norm(layer, x)).astype(np.float64) + 1e-30


# --- models ---


def randomize(model, seed: int) -> None:
    """Latent BitLinear weights N(0, 1) (ternary after quantisation), RMSNorm weights in [0.5, 1.5]."""
    from tellme.models.train.layers import BitLinear, RMSNorm

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, BitLinear):
            layer.weight.assign(rng.normal(size=layer.weight.shape).astype(np.float32))
        elif isinstance(layer, RMSNorm):
            layer.weight.assign(rng.uniform(0.5, 1.5, size=layer.weight.shape).astype(np.float32))


def mlp_model(keras):
    """Tokens of 61 -> BitLinear 47 -> ReLU -> RMSNorm -> BitLinear 19 (no size a multiple of 3 or 25)."""
    from tellme.models.train.layers import BitLinear, RMSNorm

    inputs = keras.Input((5, 61))
    h = BitLinear(61, 47, name="fc1")(inputs)
    h = keras.layers.ReLU(name="relu")(h)
    h = RMSNorm(47, 1e-5, name="norm")(h)
    model = keras.Model(inputs, BitLinear(47, 19, name="fc2")(h))
    randomize(model, seed=1)
    return model


def mlp_reference(model, x: np.ndarray) -> np.ndarray:
    g = model.get_layer
    return bitlinear(g("fc2"), rms_norm(g("norm"), np.maximum(bitlinear(g("fc1"), x), np.float32(0))))


def latent(wq: np.ndarray, s_w: np.float32) -> np.ndarray:
    """Float weights that BitLinear's absmean quantiser maps back to Wq, with scale s_w up to float
    rounding: Wq / (s_w * mean|Wq|) (mean|W| = 1 / s_w; every nonzero |W| * s_w >= 1 rounds and clamps to 1)."""
    return (wq.astype(np.float32) / (s_w * np.float32(np.abs(wq).mean()))).astype(np.float32)


def ffn_model(keras, folder):
    """Layer 0's feed-forward half of the bundled model, its weights loaded into Keras layers:
    h + down(ffn_sub_norm(relu(gate(x))^2 * up(x))), x = post_attention_layernorm(h)."""
    from tellme.models.packing import unpack_tlmm
    from tellme.models.train.layers import BitLinear, RMSNorm

    c = folder.config
    hid, inter, eps = c.hidden_size, c.intermediate_size, c.rms_norm_eps
    h = keras.Input((hid,), name="hidden")
    x = RMSNorm(hid, eps, name="post_attention_layernorm")(h)
    gate = BitLinear(hid, inter, name="gate_proj")(x)
    up = BitLinear(hid, inter, name="up_proj")(x)
    r = keras.layers.ReLU(name="relu")(gate)
    m = keras.layers.Multiply(name="gate_up")([keras.layers.Multiply(name="relu2")([r, r]), up])
    down = BitLinear(inter, hid, name="down_proj")(RMSNorm(inter, eps, name="ffn_sub_norm")(m))
    model = keras.Model(h, keras.layers.Add(name="residual")([h, down]))
    for name in ("gate_proj", "up_proj", "down_proj"):
        layer = model.get_layer(name)
        wq = unpack_tlmm(folder.tensor(f"layers.0.{name}.tlmm"), layer.weight.shape[1])
        layer.weight.assign(latent(wq, np.float32(folder.tensor(f"layers.0.{name}.scale")[0])))
    for name in ("post_attention_layernorm", "ffn_sub_norm"):
        model.get_layer(name).weight.assign(folder.tensor(f"layers.0.{name}"))
    return model


def ffn_reference(model, h: np.ndarray) -> np.ndarray:
    g = model.get_layer
    x = rms_norm(g("post_attention_layernorm"), h)
    r = np.maximum(bitlinear(g("gate_proj"), x), np.float32(0))
    return h + bitlinear(g("down_proj"), rms_norm(g("ffn_sub_norm"), r * r * bitlinear(g("up_proj"), x)))


def convert(hls4ml, model, out: Path, backend: str, io_type: str, layers: dict | None = None,
            trace: bool = False, **kwargs):
    """config_from_keras_model(granularity="name") with per-layer overrides, converted and compiled."""
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=backend)
    for name, values in (layers or {}).items():
        cfg["LayerName"][name].update(values)
    if trace:
        for layer_cfg in cfg["LayerName"].values():
            layer_cfg["Trace"] = True
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, hls_config=cfg, output_dir=str(out), backend=backend, io_type=io_type, **kwargs)
    hls_model.compile()
    return hls_model


TLMM = {"fc1": {"ParallelRows": 4, "TokenLanes": 2}, "fc2": {"ParallelRows": 3, "TokenLanes": 3}}
TLMM_STREAM = {"fc1": {"ParallelRows": 5, "TokenLanes": 3}}  # fc2 at the defaults, P = TP = 1


@pytest.fixture(scope="module")
def mlp(env, tmp_path_factory):
    """The MLP, its inputs, and the compiled hls4ml models: Vitis io_parallel (traced, with testbench data)
    and Vivado io_stream, with several P and TP (TP not dividing the 5 tokens)."""
    hls4ml, keras = env
    model = mlp_model(keras)
    x = np.random.default_rng(2).normal(size=(24, 5, 61)).astype(np.float32)
    x[3, 2] *= 1e-7  # a token below the scale floor: max|x| < 1e-5
    root = tmp_path_factory.mktemp("mlp")
    np.save(root / "x.npy", x[:4])
    np.save(root / "y.npy", model.predict(x[:4], verbose=0))
    parallel = convert(hls4ml, model, root / "vitis_parallel", "Vitis", "io_parallel", TLMM, trace=True,
                       input_data_tb=str(root / "x.npy"), output_data_tb=str(root / "y.npy"))
    stream = convert(hls4ml, model, root / "vivado_stream", "Vivado", "io_stream", TLMM_STREAM)
    return model, x, {"vitis-io_parallel": parallel, "vivado-io_stream": stream}


@pytest.mark.parametrize("variant", ["vitis-io_parallel", "vivado-io_stream"])
def test_mlp_matches_the_kernels_numpy_model_bit_for_bit(mlp, variant):
    model, x, hls_models = mlp
    y = hls_models[variant].predict(x).reshape(x.shape[0], 5, 19)
    np.testing.assert_array_equal(y, mlp_reference(model, x))


@pytest.mark.parametrize("variant", ["vitis-io_parallel", "vivado-io_stream"])
def test_mlp_matches_keras_predict(mlp, variant):
    model, x, hls_models = mlp
    assert_chained_close(hls_models[variant].predict(x), model.predict(x, verbose=0))


def test_mlp_layer_by_layer_against_keras(mlp):
    model, x, hls_models = mlp
    _, trace = hls_models["vitis-io_parallel"].trace(x)
    assert_layers_match_keras(model, trace, {"fc1": x, "norm": trace["relu"], "fc2": trace["norm"]})


def test_bitlinear_with_one_input(env, tmp_path):
    hls4ml, keras = env
    from tellme.models.train.layers import BitLinear

    inputs = keras.Input((1,))
    model = keras.Model(inputs, BitLinear(1, 7, name="fc")(inputs))
    randomize(model, seed=3)
    hls_model = convert(hls4ml, model, tmp_path / "prj", "Vitis", "io_parallel", {"fc": {"ParallelRows": 2}})
    x = np.random.default_rng(4).normal(size=(16, 1)).astype(np.float32)
    x[5] = 0.0
    y = hls_model.predict(x).reshape(16, 7)
    layer = model.get_layer("fc")
    acc, scale = int_part(layer, x)
    np.testing.assert_array_equal(y, bitlinear(layer, x))
    np.testing.assert_array_equal(np.rint(y.astype(np.float64) * scale), acc)
    assert set(np.unique(act_quant(x)[0])) <= {-127, 0, 127}  # one input: it is its own maximum
    expected = model.predict(x, verbose=0)
    assert np.all(np.abs(y - expected) <= bitlinear_bound(layer, x) + U * np.abs(expected))


@pytest.fixture(scope="module")
def ffn(env, tmp_path_factory):
    from tellme.models.default_model import default_model_dir
    from tellme.models.model_folder import open_model_folder

    hls4ml, keras = env
    folder = open_model_folder(default_model_dir())
    model = ffn_model(keras, folder)
    ids = np.random.default_rng(5).integers(0, folder.config.vocab_size, size=12)
    h = folder.tensor("embed_tokens")[ids].astype(np.float32)  # hidden states as the first layer sees them
    layers = {"gate_proj": {"ParallelRows": 8}, "up_proj": {"ParallelRows": 8}, "down_proj": {"ParallelRows": 4}}
    hls_model = convert(hls4ml, model, tmp_path_factory.mktemp("ffn") / "prj", "Vitis", "io_parallel", layers,
                        trace=True)
    y, trace = hls_model.trace(h)
    return folder, model, h, y.reshape(h.shape), trace


def test_ffn_block_matches_numpy_and_keras(ffn):
    _, model, h, y, trace = ffn
    np.testing.assert_array_equal(y, ffn_reference(model, h))
    assert_chained_close(y, model.predict(h, verbose=0))
    assert_layers_match_keras(model, trace, {
        "post_attention_layernorm": h, "gate_proj": trace["post_attention_layernorm"],
        "up_proj": trace["post_attention_layernorm"], "ffn_sub_norm": trace["gate_up"],
        "down_proj": trace["ffn_sub_norm"]})


def test_ffn_block_matches_the_reference_model(ffn):
    """The same block in the project's numpy reference, which reads the folder's ternary weights and
    scales directly (the Keras scales agree with them to float rounding)."""
    from tellme.models.reference import ReferenceModel, activation
    from tellme.models.reference import rms_norm as ref_norm

    folder, _, h, y, _ = ffn
    layer, c = ReferenceModel(folder).layers[0], folder.config
    x = ref_norm(h, layer.norms["post_attention_layernorm"], c.rms_norm_eps)
    m = activation(c.hidden_act, layer.linears["gate_proj"](x)) * layer.linears["up_proj"](x)
    expected = h + layer.linears["down_proj"](ref_norm(m, layer.norms["ffn_sub_norm"], c.rms_norm_eps))
    assert_chained_close(y, expected)


def test_written_project_holds_the_kernels(mlp):
    """What hls4ml's build() synthesises: the kernel headers, the config structs with the TLMM parameters,
    the calls, the dataflow top."""
    hls_model = mlp[2]["vitis-io_parallel"]
    out = Path(hls_model.config.get_output_dir())
    nnet = out / "firmware" / "nnet_utils"
    for name in ("common.h", "tlmm.h", "elementwise.h", "tlmm_dense.h"):
        assert (nnet / name).read_text() == (ROOT / "hls" / "kernels" / name).read_text()
    assert (nnet / "nnet_tellme.h").read_text() == (ROOT / "hls" / "hls4ml_plugin" / "nnet_tellme.h").read_text()
    params = (out / "firmware" / "parameters.h").read_text()
    assert '#include "nnet_utils/nnet_tellme.h"' in params
    fc1 = re.search(r"struct config\d+ : nnet::tlmm_bitlinear_config \{(.*?)\};", params, re.S).group(1)
    for line in ("n_in = 61;", "n_out = 47;", "n_tokens = 5;", "ports = 4;", "token_lanes = 2;", "max_wpr = 1;",
                 "max_rows = 12;"):
        assert line in fc1
    top = (out / "firmware" / "myproject.cpp").read_text()
    assert "#pragma HLS DATAFLOW" in top
    assert top.count("nnet::tlmm_bitlinear<") == 2 and top.count("nnet::tlmm_rms_norm<") == 1


def test_project_testbench_under_asan_and_ubsan(mlp, tmp_path):
    """The written project's own testbench (what build(csim=True) runs), compiled as its TCL adds it but
    with ASan and UBSan, run on the testbench data: no sanitizer report, the outputs of predict."""
    from tellme.hls.toolchain import SANITIZE_FLAGS

    model, x, hls_models = mlp
    out = Path(hls_models["vitis-io_parallel"].config.get_output_dir())
    shutil.copytree(out / "firmware" / "weights", tmp_path / "weights")
    shutil.copytree(out / "tb_data", tmp_path / "tb_data")
    exe = tmp_path / "csim"
    subprocess.run(["g++", *SANITIZE_FLAGS, f"-I{out / 'firmware' / 'ap_types'}", f"-I{out / 'firmware'}",
                    str(out / "myproject_test.cpp"), str(out / "firmware" / "myproject.cpp"), "-o", str(exe)],
                   check=True, capture_output=True)
    result = subprocess.run([str(exe)], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    logged = np.loadtxt(tmp_path / "tb_data" / "csim_results.log").reshape(4, -1)
    np.testing.assert_allclose(logged, hls_models["vitis-io_parallel"].predict(x[:4]).reshape(4, -1), rtol=1e-5,
                               atol=1e-6)


STRICT = ["-std=c++14", "-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas", "-Wno-unused-label",
          "-Wno-maybe-uninitialized", "-c"]


@pytest.mark.parametrize("defines", [[], ["-DTELLME_FAST_CSIM", "-DTELLME_PROFILE"]])
def test_kernels_compile_without_a_warning(tmp_path, defines):
    """tlmm_dense.h and nnet_tellme.h, every entry point instantiated (tests/cpp/tlmm_dense_strict.cpp)."""
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    from tellme.hls.toolchain import ap_types_dir

    nnet = ap_types_dir().parent / "nnet_utils"
    result = subprocess.run(["g++", *STRICT, *defines, "-isystem", str(ap_types_dir()), "-isystem", str(nnet),
                             f"-I{ROOT / 'hls' / 'kernels'}", f"-I{ROOT / 'hls' / 'hls4ml_plugin'}",
                             str(ROOT / "tests" / "cpp" / "tlmm_dense_strict.cpp"), "-o", str(tmp_path / "k.o")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def test_config_exposes_the_tlmm_parameters(env, mlp, tmp_path):
    hls4ml, keras = env
    model = mlp[0]
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vivado")
    assert cfg["LayerName"]["fc1"]["ParallelRows"] == 1 and cfg["LayerName"]["fc1"]["TokenLanes"] == 1
    assert cfg["LayerName"]["norm"]["Precision"]["result"] == "auto"
    cfg["LayerName"]["fc2"]["ParallelRows"] = 0
    with pytest.raises(ValueError, match="parallel_rows must be at least 1"):
        hls4ml.converters.convert_from_keras_model(model, hls_config=cfg, output_dir=str(tmp_path / "bad"),
                                                   backend="Vivado")


def test_user_precisions_are_kept(env, mlp, tmp_path):
    """Only 'auto' becomes float32: a precision the user set stays, and the kernel converts at its edges."""
    hls4ml, keras = env
    model = mlp[0]
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend="Vitis")
    cfg["LayerName"]["fc2"]["Precision"]["result"] = "ap_fixed<24,12>"
    hls_model = hls4ml.converters.convert_from_keras_model(model, hls_config=cfg, output_dir=str(tmp_path / "p"),
                                                           backend="Vitis")
    types = {layer.name: str(layer.get_output_variable().type.precision) for layer in hls_model.get_layers()}
    assert types["fc2"].startswith("fixed<24,12") and types["fc1"] == types["relu"] == types["norm"] == "float"


def test_register_twice(env):
    from tellme.hls import hls4ml_plugin

    hls4ml_plugin.register()  # a second call changes nothing and does not raise


def test_rom_holds_the_ternary_matrix():
    """The ROM limbs read back as the matrix: [row-step][column][port][limb], zero rows past n_out."""
    pytest.importorskip("hls4ml")
    from tellme.hls.hls4ml_plugin.layers import rom_limbs
    from tellme.models.ddr_image import word_indices
    from tellme.models.packing import indices_to_ternary

    wq = np.random.default_rng(6).integers(-1, 2, size=(23, 101)).astype(np.int8)
    for ports in (1, 4, 5):
        limbs = rom_limbs(wq, ports)
        steps, wpr = -(-23 // ports), 2
        words = limbs.view(np.uint8).reshape(steps, wpr, ports, 16).transpose(0, 2, 1, 3).reshape(steps * ports,
                                                                                                 wpr, 16)
        back = indices_to_ternary(word_indices(words), 101)
        np.testing.assert_array_equal(back[:23], wq)
        assert not back[23:].any()


def test_docs_example_runs_as_written(env, tmp_path, monkeypatch):
    """The first python block of docs/hls4ml.md, run in an empty folder; its outputs are Keras'."""
    text = (ROOT / "docs" / "hls4ml.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "docs/hls4ml.md", "exec"), scope)  # noqa: S102 - the project's own documentation
    assert_chained_close(scope["y"], scope["model"].predict(scope["x"], verbose=0))
