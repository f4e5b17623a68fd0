"""Figures from the tools' reports, for a design's manifest.json:
- Vitis HLS `<project>/<solution>/syn/report/csynth.xml` (root <profile>): latency, estimated clock,
  resource estimates;
- Vivado `report_utilization` text tables: used and available LUT, FF, BRAM tiles, URAM, DSP;
- Vivado `report_timing_summary`: the "Design Timing Summary" row (WNS, TNS, WHS, THS).
A report that lacks what we need raises ReportError naming the file, so a tool-version change in the
format shows up as a clear failure and not as nulls in a manifest."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

# csynth.xml <Resources> tag -> our key; older releases said DSP48E
HLS_RESOURCES = {"BRAM_18K": "bram_18k", "DSP": "dsp", "DSP48E": "dsp", "FF": "ff", "LUT": "lut", "URAM": "uram"}
# report_utilization "Site Type" (without a trailing '*') -> our key; CLB: UltraScale+, Slice: 7-series
UTILIZATION_ROWS = {
    "CLB LUTs": "lut", "Slice LUTs": "lut",
    "CLB Registers": "ff", "Slice Registers": "ff",
    "Block RAM Tile": "bram",
    "URAM": "uram",
    "DSPs": "dsp",
}
TIMING_KEYS = {"WNS(ns)": "wns_ns", "TNS(ns)": "tns_ns", "WHS(ns)": "whs_ns", "THS(ns)": "ths_ns"}
_TOOL_VERSION = re.compile(r"^\|\s*Tool Version\s*:\s*(.+?)\s*$", re.M)
_DEVICE = re.compile(r"^\|\s*Device\s*:\s*(\S+)", re.M)


class ReportError(ValueError):
    """A report is missing or not in the format we parse."""


def _read(path: Path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError as exc:
        raise ReportError(f"cannot read report {path}: {exc}") from None


def _number(text: str | None) -> float | None:
    """A report number; None for Vitis HLS's "undef" (loops without a trip count), Vivado's "NA" / "N/A",
    and anything not finite ("nan", "inf"): a manifest holds JSON numbers or null, never NaN."""
    if text is None:
        return None
    text = text.strip().replace(",", "")
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() and "." not in text else value


def parse_csynth_xml(path: Path) -> dict:
    """Latency (cycles, best/average/worst), interval, target/estimated clock (ns), resources used and
    available, from csynth.xml."""
    try:
        root = ET.fromstring(_read(path))
    except ET.ParseError as exc:
        raise ReportError(f"{path} is not XML ({exc})") from None
    perf = root.find("PerformanceEstimates")
    area = root.find("AreaEstimates/Resources")
    if perf is None or area is None:
        raise ReportError(f"{path} has no PerformanceEstimates/AreaEstimates: not a Vitis HLS csynth.xml")
    latency = perf.find("SummaryOfOverallLatency")
    if latency is None:
        raise ReportError(f"{path} has no SummaryOfOverallLatency")

    def text(node: ET.Element | None, tag: str) -> str | None:
        found = node.find(tag) if node is not None else None
        return found.text if found is not None else None

    def resources(node: ET.Element | None) -> dict:
        out: dict = {}
        for child in node if node is not None else []:
            if child.tag in HLS_RESOURCES:
                out[HLS_RESOURCES[child.tag]] = _number(child.text)
        return out

    used = resources(area)
    if not {"lut", "ff"} <= used.keys():
        raise ReportError(f"{path}: AreaEstimates/Resources lacks LUT or FF")
    return {
        "tool": f"Vitis HLS {text(root, 'ReportVersion/Version')}" if text(root, "ReportVersion/Version") else None,
        "part": text(root, "UserAssignments/Part"),
        "top": text(root, "UserAssignments/TopModelName"),
        "target_clock_ns": _number(text(root, "UserAssignments/TargetClockPeriod")),
        "estimated_clock_ns": _number(text(perf, "SummaryOfTimingAnalysis/EstimatedClockPeriod")),
        "latency_cycles": {
            "best": _number(text(latency, "Best-caseLatency")),
            "average": _number(text(latency, "Average-caseLatency")),
            "worst": _number(text(latency, "Worst-caseLatency")),
        },
        "interval_cycles": {
            "min": _number(text(latency, "Interval-min")),
            "max": _number(text(latency, "Interval-max")),
        },
        "resources": used,
        "available": resources(root.find("AreaEstimates/AvailableResources")),
    }


def _table_header(line: str) -> list[str] | None:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    return cells if cells and cells[0] == "Site Type" and "Used" in cells else None


def parse_utilization(path: Path) -> dict:
    """Used and available LUT, FF, BRAM (36 Kb tiles; halves count 0.5), URAM, DSP from a
    report_utilization file; a resource the part lacks (URAM on 7-series) is absent."""
    text = _read(path)
    used: dict = {}
    available: dict = {}
    header: list[str] | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            if not line.startswith("+"):
                header = None  # a table ends at its text
            continue
        found = _table_header(line)
        if found:
            header = found
            continue
        if header is None:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != len(header):
            continue
        key = UTILIZATION_ROWS.get(cells[0].rstrip("*").strip())
        if key is None or key in used:
            continue
        row = dict(zip(header, cells, strict=True))
        used[key] = _number(row["Used"])
        available[key] = _number(row.get("Available"))
    if not {"lut", "ff", "bram", "dsp"} <= used.keys():
        missing = sorted({"lut", "ff", "bram", "dsp"} - used.keys())
        raise ReportError(f"{path}: no {', '.join(missing)} row in a Site Type table: not a report_utilization file")
    unread = [key for key in ("lut", "ff", "bram", "dsp") if used[key] is None]
    if unread:
        raise ReportError(f"{path}: the {unread[0].upper()} row's Used is not a number: the report is incomplete "
                          "(read it, then rebuild)")
    return {"tool": _header(text, _TOOL_VERSION), "device": _header(text, _DEVICE),
            "used": used, "available": available}


def parse_timing_summary(path: Path) -> dict:
    """WNS/TNS/WHS/THS (ns) of the "Design Timing Summary" and whether every constraint is met."""
    text = _read(path)
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "Design Timing Summary" in line), None)
    if start is None:
        raise ReportError(f"{path}: no Design Timing Summary: not a report_timing_summary file")
    header_at = next((i for i in range(start, len(lines)) if "WNS(ns)" in lines[i]), None)
    if header_at is None:
        raise ReportError(f"{path}: the Design Timing Summary has no WNS(ns) column")
    # columns are separated by two or more spaces (their names contain single spaces)
    names = re.split(r"\s{2,}", lines[header_at].strip())
    values_line = next(
        (line for line in lines[header_at + 1:] if line.strip() and not set(line.strip()) <= set("- ")), ""
    )
    values = values_line.split()
    if len(values) != len(names):
        raise ReportError(f"{path}: the Design Timing Summary row has {len(values)} values for {len(names)} columns")
    row = dict(zip(names, values, strict=True))
    figures = {key: _number(row.get(name)) for name, key in TIMING_KEYS.items()}
    if figures["wns_ns"] is None:
        raise ReportError(f"{path}: WNS is {row.get('WNS(ns)')!r}, not a number: the design has no timing "
                          "constraints or the report is incomplete")
    met = "All user specified timing constraints are met" in text
    if not met and "Timing constraints are not met" not in text:
        met = figures["wns_ns"] >= 0 and (figures["whs_ns"] is None or figures["whs_ns"] >= 0)
    return {"tool": _header(text, _TOOL_VERSION), **figures, "met": met}


def _header(text: str, pattern: re.Pattern) -> str | None:
    match = pattern.search(text)
    return match.group(1) if match else None
