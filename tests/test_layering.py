"""The layering rule: core/ and search/'s pure modules are functions over Keras models, TFLite bytes and
Vela; they import no TFX (and nothing of collabopt above them), so benchmarks and other orchestrators
reuse them. Read from the source (every import statement, at any depth), not from what one import loads."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ABOVE_CORE = ("tfx", "collabopt.components", "collabopt.pipelines", "collabopt.runners", "collabopt.cli",
              "collabopt.kubeflow", "collabopt.search", "collabopt.mlmd")


def imports(path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def offending(folder, forbidden, root=ROOT):
    return {str(p.relative_to(root)): name for p in sorted((root / folder).rglob("*.py")) for name in imports(p)
            if name.split(".")[0] == "tfx" or any(name == f or name.startswith(f + ".") for f in forbidden)}


@pytest.mark.parametrize("folder", ["core"])
def test_core_imports_nothing_above_it(folder):
    assert offending(folder, ABOVE_CORE) == {}


def test_the_rule_sees_an_import_inside_a_function(tmp_path):
    (tmp_path / "core" / "npu").mkdir(parents=True)
    (tmp_path / "core" / "npu" / "probe.py").write_text("def f():\n    from tfx.types import standard_artifacts\n")
    (tmp_path / "core" / "ok.py").write_text("import tfx_bsl\nfrom collabopt.core import tfenv\n")
    assert offending("core", ABOVE_CORE, tmp_path) == {"core/npu/probe.py": "tfx.types"}
