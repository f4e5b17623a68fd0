"""The pynq driver class of the accelerator IP, bound by its VLNV: pynq's Overlay then hands out a
TellmeAccelerator for the cell (overlay.tellme_top_0). Importing this module imports pynq, so only the
board device imports it, just before it loads the overlay (drivers must be registered by then).
"""

from __future__ import annotations

from pynq import DefaultIP

from .design_manifest import DECODER_TOP, HLS_IP_VERSION, HLS_LIBRARY, HLS_VENDOR

VLNV = f"{HLS_VENDOR}:{HLS_LIBRARY}:{DECODER_TOP}:{HLS_IP_VERSION}"



class TellmeAccelerator(DefaultIP):
    """tellme_top's s_axilite port with its register map. tellme.host.pynq_device drives it (arguments by
    name under every form Vitis HLS writes, ap_start, ap_done polled: no interrupt is wired); reading
    CTRL clears ap_done, so nothing here reads it behind the device's back."""

    bindto = [VLNV]

    def __init__(self, description: dict):
        super().__init__(description=description)
        self.registers: dict = dict(description.get("registers") or {})
