"""hls4ml extension: the Keras BitNet layers (tellme.models.train.layers) as on-chip TLMM kernels.

    from tellme.hls import hls4ml_plugin
    hls4ml_plugin.register()

after which hls4ml converts a Keras 3 model containing `BitLinear` and `RMSNorm` layers for its Vivado
and Vitis backends (io_parallel and io_stream). The pieces, hls4ml's Extension API one by one:

- converter.py   Keras 3 layer handlers (the front end)
- layers.py      hls4ml layer classes: shapes, TLMM parameters (ParallelRows, TokenLanes), weights
- passes.py      float32 around the ternary layers, dataflow pipeline style
- templates.py   config structs and function calls (the backend side)
- nnet_tellme.h  hls4ml's calling convention around hls/kernels/tlmm_dense.h, which reuses tlmm.h and
                 elementwise.h; all copied into the project's firmware/nnet_utils

See docs/hls4ml.md.
"""

from __future__ import annotations

from pathlib import Path

from hls4ml.backends import get_backend
from hls4ml.model.layers import register_layer

from .converter import register_handlers
from .layers import BitLinear, RMSNorm
from .passes import register_passes
from .templates import TEMPLATES

BACKENDS = ("Vivado", "Vitis")
KERNELS = Path(__file__).resolve().parent.parent / "kernels"
# every header the generated code includes, copied into firmware/nnet_utils
SOURCES = (KERNELS / "common.h", KERNELS / "tlmm.h", KERNELS / "elementwise.h", KERNELS / "tlmm_dense.h",
           Path(__file__).resolve().parent / "nnet_tellme.h")

_registered = False


def register() -> None:
    """Register the layers, Keras handlers, passes, templates and kernel sources with hls4ml (once)."""
    global _registered
    if _registered:
        return
    register_layer("BitLinear", BitLinear)
    register_layer("RMSNorm", RMSNorm)
    register_handlers()
    register_passes()
    for name in BACKENDS:
        backend = get_backend(name)
        for template in TEMPLATES:
            backend.register_template(template)
        for source in SOURCES:
            backend.register_source(source)
    _registered = True


__all__ = ["register", "BitLinear", "RMSNorm"]
