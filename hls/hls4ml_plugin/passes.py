"""Optimizer passes of the plugin, run in hls4ml's 'convert' flow before it infers precisions.

float32 around the ternary layers. BitLinear and RMSNorm compute in float32 as the Keras layers do.
An 'auto' precision (what config_from_keras_model(granularity="name") writes) would otherwise become
the model's default fixed-point type, which rounds the activations before they are quantised to int8;
so an 'auto' input feeding one of these layers, and the 'auto' result of a layer without weights
(activation, merge, reshape) whose inputs are all float32, become float32 too. Precisions the user set
are kept.

Dataflow. The kernels are loops (the weights are read a word column a cycle); hls4ml's io_parallel
default pipelines the whole top, which would unroll them. An 'auto' pipeline style becomes dataflow, as
hls4ml does for its Resource strategy.
"""

from __future__ import annotations

from hls4ml.model.flow import get_flow
from hls4ml.model.layers import Input, Layer
from hls4ml.model.optimizer import OptimizerPass, get_available_passes, register_pass
from hls4ml.model.types import StandardFloatPrecisionType, UnspecifiedPrecisionType

from .layers import BitLinear, RMSNorm

TERNARY_LAYERS = (BitLinear, RMSNorm)
BEFORE = "infer_precision_types"  # the 'convert' pass that turns 'auto' into the model default


def _is_float32(precision: object) -> bool:
    return isinstance(precision, StandardFloatPrecisionType) and precision.width == 32 and precision.exponent == 8


def _auto_result(node: Layer) -> bool:
    result = node.types.get("result_t")
    return result is not None and isinstance(result.precision, UnspecifiedPrecisionType)


class TellmeFloatAroundTernary(OptimizerPass):
    """'auto' result types next to the ternary layers become float32 (see the module docstring)."""

    name = "tellme_float_around_ternary"

    def match(self, node: Layer) -> bool:
        if not _auto_result(node):
            return False
        if isinstance(node, Input):
            return any(isinstance(user, TERNARY_LAYERS) for user in node.get_output_nodes())
        if node.weights:
            return False
        inputs = [node.get_input_variable(name) for name in node.inputs]
        return bool(inputs) and all(var is not None and _is_float32(var.type.precision) for var in inputs)

    def transform(self, model: object, node: Layer) -> bool:
        node.get_output_variable().type.precision = model.config.backend.convert_precision_string("float")
        return False  # no node added or removed


class TellmeDataflow(OptimizerPass):
    """An 'auto' pipeline style becomes dataflow when the model has a ternary layer."""

    name = "tellme_dataflow"

    def match(self, node: Layer) -> bool:
        return isinstance(node, TERNARY_LAYERS) and node.model.config.pipeline_style in (None, "auto")

    def transform(self, model: object, node: Layer) -> bool:
        model.config.pipeline_style = "dataflow"
        return False


PASSES = (TellmeFloatAroundTernary, TellmeDataflow)


def register_passes() -> None:
    """Register the passes and put them into the 'convert' flow, ahead of precision inference."""
    flow = get_flow("convert").optimizers  # a plain list for this (static) flow
    for cls in PASSES:
        if cls.name not in get_available_passes():
            register_pass(cls.name, cls)
        if cls.name not in flow:
            flow.insert(flow.index(BEFORE), cls.name)
