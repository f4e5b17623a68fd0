"""Cause 11 of issue 16: reports with "N/A", "nan" or "inf" where a figure belongs. A figure that is not a
finite number is null in the manifest, never NaN (which is not JSON); a figure the build needs (used
resources, WNS) that is missing refuses the build in one line, and the manifest says built=true only
once everything else is in place."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from guard_checks import error_line, make_model, run_cli
from test_build_flow import REPORTS, fake_tools, needs_tclsh, register_files

from tellme.hls.reports import ReportError, parse_csynth_xml, parse_timing_summary, parse_utilization
from tellme.host.design_manifest import write_manifest


def strict_json(path: Path) -> dict:
    """JSON as the standard has it: NaN and Infinity are refused."""
    def refuse(name: str) -> None:
        raise AssertionError(f"{path} holds {name}, which is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def _utilization_used(row: str, value: str):
    """The Used cell of a utilization table row replaced."""
    return "utilization_kv260.rpt", lambda text: re.sub(rf"(\| {re.escape(row)}\s*\|)\s*\d+(\.\d+)?\s*\|",
                                                         rf"\1 {value} |", text, count=1)


def _timing_cell(column: int, value: str):
    def edit(text: str) -> str:
        lines = text.splitlines(keepends=True)
        at = next(i for i, line in enumerate(lines) if "WNS(ns)" in line) + 2
        cells = lines[at].split()
        cells[column] = value
        lines[at] = "    " + "  ".join(cells) + "\n"
        return "".join(lines)
    return "timing_summary.rpt", edit


def _available(row: str, value: str):
    def edit(text: str) -> str:
        return re.sub(rf"(\| {re.escape(row)}\s*\|[^|]*\|[^|]*\|[^|]*\|)\s*\d+\s*\|", rf"\1 {value} |", text, count=1)
    return "utilization_kv260.rpt", edit


# report damage -> words of the ReportError, or None when the report still parses (the figure becomes null)
BAD_REPORTS = {
    "LUTs used N/A": (_utilization_used("CLB LUTs", "N/A"), "LUT row's Used is not a number"),
    "DSPs used nan": (_utilization_used("DSPs", "nan"), "DSP row's Used is not a number"),
    "URAM used N/A": (_utilization_used("URAM", "N/A"), None),
    "LUTs available N/A": (_available("CLB LUTs", "N/A"), None),
    "WNS nan": (_timing_cell(0, "nan"), "WNS is 'nan', not a number"),
    "WNS inf": (_timing_cell(0, "inf"), "WNS is 'inf', not a number"),
    "WNS N/A": (_timing_cell(0, "N/A"), "WNS is 'N/A', not a number"),
    "TNS nan": (_timing_cell(1, "nan"), None),
    "WHS N/A": (_timing_cell(4, "N/A"), None),
}
PARSERS = {"utilization_kv260.rpt": parse_utilization, "timing_summary.rpt": parse_timing_summary}


def damaged(tmp_path: Path, bad: str) -> tuple[str, Path]:
    (name, edit), _ = BAD_REPORTS[bad]
    path = tmp_path / name
    text = (REPORTS / name).read_text()
    path.write_text(edit(text))
    assert path.read_text() != text, f"the edit for {bad!r} changed nothing"
    return name, path


def _figures(value: object) -> list:
    if isinstance(value, dict):
        return [f for v in value.values() for f in _figures(v)]
    return [value] if isinstance(value, float) else []


@pytest.mark.parametrize("bad", sorted(BAD_REPORTS))
def test_report_parsers(bad, tmp_path):
    name, path = damaged(tmp_path, bad)
    words = BAD_REPORTS[bad][1]
    if words is not None:
        with pytest.raises(ReportError, match=re.escape(words)):
            PARSERS[name](path)
        return
    figures = PARSERS[name](path)
    assert all(math.isfinite(f) for f in _figures(figures))
    json.dumps(figures, allow_nan=False)


def test_csynth_undef_and_nan_are_null(tmp_path):
    path = tmp_path / "csynth.xml"
    text = (REPORTS / "csynth.xml").read_text()
    path.write_text(text.replace("<EstimatedClockPeriod>2.92", "<EstimatedClockPeriod>nan", 1))
    assert parse_csynth_xml(path)["estimated_clock_ns"] is None


def test_a_manifest_is_never_written_with_nan(tmp_path):
    write_manifest(tmp_path, {"built": False})
    with pytest.raises(ValueError):
        write_manifest(tmp_path, {"built": True, "wns_ns": float("nan")})
    assert strict_json(tmp_path / "manifest.json") == {"built": False}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("reports"))[1]


# what a finished build shows of a figure that was not a number: (where in the manifest, the line printed)
NULL_FIGURES = {
    "LUTs available N/A": (("vivado", "utilization", "available", "lut"), "LUT 86412/n/a"),
    "TNS nan": (("vivado", "timing", "tns_ns"), "WNS 0.137 ns"),
}


@needs_tclsh
@pytest.mark.parametrize("bad", ["LUTs used N/A", "WNS nan", *NULL_FIGURES])
def test_build_with_such_reports(bad, model, tmp_path, capsys, monkeypatch):
    """Through the whole flow (stand-in tools): refused builds leave built=false and no bitstream; the
    others finish with a manifest that is valid JSON."""
    name, report = damaged(tmp_path, bad)
    reports = {"utilization_kv260.rpt": "TELLME_UTILIZATION_RPT", "timing_summary.rpt": "TELLME_TIMING_RPT"}
    monkeypatch.setenv("PATH", f"{fake_tools(tmp_path)}:/usr/bin:/bin")
    monkeypatch.setenv("TELLME_TCL_LOG", str(tmp_path / "calls.log"))
    monkeypatch.setenv("TELLME_UTILIZATION_RPT", str(REPORTS / "utilization_kv260.rpt"))
    monkeypatch.setenv("TELLME_TIMING_RPT", str(REPORTS / "timing_summary.rpt"))
    monkeypatch.setenv("TELLME_CSYNTH_XML", str(REPORTS / "csynth.xml"))
    monkeypatch.setenv(reports[name], str(report))
    register_files(tmp_path, Path(model), monkeypatch)  # the exported IP's registers, as Vitis HLS writes them
    out = tmp_path / "design"
    code, stdout, err = run_cli(capsys, "build", "--board", "kv260", "--model", model, "--out", out)
    manifest = strict_json(out / "manifest.json")
    if BAD_REPORTS[bad][1] is not None:
        error_line(code, err, BAD_REPORTS[bad][1])
        assert manifest["built"] is False and not list(out.glob("*.bit")) and not list(out.glob(".*"))
    else:
        assert code == 0, err
        assert manifest["built"] is True and (out / "design.bit").is_file()
        keys, printed = NULL_FIGURES[bad]
        figure = manifest
        for key in keys:
            figure = figure[key]
        assert figure is None and printed in stdout
