"""One ptq leaf through the tree pipeline (real TFLite, Vela and TFLM): `report --format json` holds
TFLM's numbers and arena next to Vela's SRAM, and max_arena_bytes and max_sram_bytes gate with the
reasons named (report JSON and the HTML report's reason lines)."""
import html
import json

import pytest

from collabopt import cli
from collabopt.core.firmware import tflm
from collabopt.tests.helpers import run_tree

CONFIG = {"name": "firmware-test", "paths": ["ptq"], "data": {"train_limit": 300, "eval_limit": 100},
          "baseline": {"epochs": 1, "width": 16, "blocks": 1},
          "requirements": {"max_arena_bytes": 1000, "max_sram_bytes": 1}, "npu": {"targets": ["ethos-u55-128"]}}


@pytest.mark.slow  # ~90 s: a baseline, a conversion, Vela, Beam and TFLM
def test_report_json_has_the_arena_and_the_gate_names_the_miss(tmp_path, capsys):
    mlmd = run_tree(tmp_path, CONFIG)
    cli.main(["report", "--mlmd", mlmd, "--format", "json"])
    [leaf] = json.loads(capsys.readouterr().out)
    arena = leaf["tflm_arena_bytes"]
    assert arena > 1000 and arena % 16 == 0
    sram = leaf["npu"]["ethos-u55-128"]["sram_bytes"]
    assert sram > 0  # Vela's SRAM for the NPU path
    assert leaf["tflm_examples"] == tflm.CHECK_EXAMPLES and leaf["tflm_error"] is None
    assert leaf["tflm_max_lsb"] is not None and 0 <= leaf["tflm_top1_differ_rate"] <= 1
    reasons = [f"ethos-u55-128 Vela SRAM {sram:,} B > max 1 B", f"TFLM tensor arena {arena:,} B > max 1,000 B"]
    assert not leaf["blessed"] and leaf["reasons"] == reasons
    page = tmp_path / "report.html"
    cli.main(["report", "--mlmd", mlmd, "--format", "html", "-o", str(page)])
    assert all(f"<div class=\"reason\">{html.escape(r)}</div>" in page.read_text() for r in reasons)
    cli.main(["report", "--mlmd", mlmd])
    table = capsys.readouterr().out
    assert "arena" in table.splitlines()[0] and f"{arena:,}" in table
