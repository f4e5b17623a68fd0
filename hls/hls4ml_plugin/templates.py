"""hls4ml config and function-call templates of the plugin's layers (the backend side).

The config struct of a layer states every kernel parameter (nnet_tellme.h's defaults structs document
them); floats are written as the shortest decimal that reads back as the same float32.
"""

from __future__ import annotations

import numpy as np
from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.model.layers import Layer

from .layers import BitLinear, RMSNorm

INCLUDES = ["nnet_utils/nnet_tellme.h"]

BITLINEAR_CONFIG = """struct config{index} : nnet::tlmm_bitlinear_config {{
    static const unsigned n_in = {n_in};
    static const unsigned n_out = {n_out};
    static const unsigned n_tokens = {n_tokens};
    static const unsigned ports = {parallel_rows};
    static const unsigned token_lanes = {token_lanes};
    static const unsigned max_wpr = {words_per_row};
    static const unsigned max_rows = {row_steps};
    static const unsigned max_block = {token_lanes};
    static const bool half_table = {half_table};
    static constexpr float weight_scale = {scale};
    static const unsigned io_type = nnet::{iotype};
    typedef {weight_type} weight_t;
}};\n"""

RMS_NORM_CONFIG = """struct config{index} : nnet::tlmm_rms_norm_config {{
    static const unsigned n_in = {n_in};
    static const unsigned n_tokens = {n_tokens};
    static constexpr float epsilon = {eps};
    static const unsigned io_type = nnet::{iotype};
    typedef {weight_type} weight_t;
}};\n"""

BITLINEAR_CALL = "nnet::tlmm_bitlinear<{input_t}, {output_t}, {config}>({input}, {output}, {w});"
RMS_NORM_CALL = "nnet::tlmm_rms_norm<{input_t}, {output_t}, {config}>({input}, {output}, {w});"


def float_literal(value: float) -> str:
    """A C++ float literal that reads back as exactly np.float32(value)."""
    return np.format_float_scientific(np.float32(value), unique=True) + "f"


class BitLinearConfigTemplate(LayerConfigTemplate):
    def __init__(self) -> None:
        super().__init__(BitLinear)

    def format(self, node: Layer) -> str:
        params = self._default_config_params(node)
        params["scale"] = float_literal(node.get_attr("weight_scale"))
        params["weight_type"] = node.get_weights("weight").type.name
        return BITLINEAR_CONFIG.format(**params)


class BitLinearFunctionTemplate(FunctionCallTemplate):
    def __init__(self) -> None:
        super().__init__(BitLinear, include_header=INCLUDES)

    def format(self, node: Layer) -> str:
        params = self._default_function_params(node)
        params["w"] = node.get_weights("weight").name
        return BITLINEAR_CALL.format(**params)


class RMSNormConfigTemplate(LayerConfigTemplate):
    def __init__(self) -> None:
        super().__init__(RMSNorm)

    def format(self, node: Layer) -> str:
        params = self._default_config_params(node)
        params["eps"] = float_literal(node.get_attr("epsilon"))
        params["weight_type"] = node.get_weights("weight").type.name
        return RMS_NORM_CONFIG.format(**params)


class RMSNormFunctionTemplate(FunctionCallTemplate):
    def __init__(self) -> None:
        super().__init__(RMSNorm, include_header=INCLUDES)

    def format(self, node: Layer) -> str:
        params = self._default_function_params(node)
        params["w"] = node.get_weights("weight").name
        return RMS_NORM_CALL.format(**params)


TEMPLATES = (BitLinearConfigTemplate, BitLinearFunctionTemplate, RMSNormConfigTemplate, RMSNormFunctionTemplate)
