"""The C bundle: the model array compiles (C and C++) and holds the .tflite byte for byte; the op
resolver registers exactly the flatbuffer's operators and compiles against a stand-in TFLM header;
the arena header carries the published size."""
import re
import subprocess

import pytest

from collabopt.core.firmware import c_bundle, tflite_file
from collabopt.tests.firmware_models import NAMES
from collabopt.tests.helpers import tflm_child

# Method names of the REAL tensorflow/lite/micro/micro_mutable_op_resolver.h (tflite-micro main,
# 2026-08), copied name by name; the stand-in below declares only these.
REAL_ADD_METHODS = """AddAbs AddAdd AddAddN AddArgMax AddArgMin AddAssignVariable AddAveragePool2D
AddBatchMatMul AddBatchToSpaceNd AddBroadcastArgs AddBroadcastTo AddCallOnce AddCast AddCeil
AddCircularBuffer AddConcatenation AddConv2D AddCos AddCumSum AddDecode AddDelay AddDepthToSpace
AddDepthwiseConv2D AddDequantize AddDetectionPostprocess AddDiv AddDynamicUpdateSlice
AddEmbeddingLookup AddEnergy AddElu AddEqual AddEthosU AddExp AddExpandDims AddFftAutoScale AddFill
AddFilterBank AddFilterBankLog AddFilterBankSquareRoot AddFilterBankSpectralSubtraction AddFloor
AddFloorDiv AddFloorMod AddFramer AddFullyConnected AddGather AddGatherNd AddGreater AddGreaterEqual
AddHardSwish AddIf AddIrfft AddL2Normalization AddL2Pool2D AddLeakyRelu AddLess AddLessEqual AddLog
AddLogicalAnd AddLogicalNot AddLogicalOr AddLogistic AddLogSoftmax AddMaximum AddMaxPool2D
AddMirrorPad AddMean AddMinimum AddMul AddNeg AddNotEqual AddOverlapAdd AddPack AddPad AddPadV2
AddPCAN AddPrelu AddQuantize AddReadVariable AddReduceAll AddReduceMax AddReduceMin AddRelu AddRelu6
AddReshape AddResizeBilinear AddResizeNearestNeighbor AddReverseV2 AddRfft AddRound AddRsqrt
AddSelectV2 AddShape AddSin AddSlice AddSoftmax AddSpaceToBatchNd AddSpaceToDepth AddSplit AddSplitV
AddSqueeze AddSqrt AddSquare AddSquaredDifference AddStridedSlice AddStacker AddSub AddSum AddSvdf
AddTanh AddTransposeConv AddTranspose AddUnpack AddUnidirectionalSequenceLSTM AddVarHandle AddWhile
AddWindow AddZerosLike""".split()


def _stand_in(root):
    """A minimal tensorflow/lite/micro/micro_mutable_op_resolver.h: the real class template's name,
    its Add methods (no arguments: the real ones default theirs), recording each call."""
    d = root / "tensorflow" / "lite" / "micro"
    d.mkdir(parents=True, exist_ok=True)
    methods = "\n".join(f'  TfLiteStatus {m}() {{ return Record("{m}"); }}' for m in REAL_ADD_METHODS)
    (d / "micro_mutable_op_resolver.h").write_text(f"""// STAND-IN for tflite-micro's micro_mutable_op_resolver.h (test only)
#pragma once
#include <string>
#include <vector>
typedef enum {{ kTfLiteOk = 0, kTfLiteError = 1 }} TfLiteStatus;
namespace tflite {{
template <unsigned int tOpCount>
class MicroMutableOpResolver {{
 public:
  std::vector<std::string> calls;
{methods}
 private:
  TfLiteStatus Record(const char* name) {{
    for (const auto& c : calls) if (c == name) return kTfLiteError;  // TFLM refuses duplicates
    if (calls.size() >= tOpCount) return kTfLiteError;               // and a full resolver
    calls.push_back(name);
    return kTfLiteOk;
  }}
}};
}}  // namespace tflite
""")
    return root


def _run(cmd, cwd):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert p.returncode == 0, f"{' '.join(map(str, cmd))}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def _flatbuffer_ops(blob):
    """Operator codes read with TFLM's own schema module (not the reader c_bundle uses)."""
    from tflite_micro.python.tflite_micro import runtime
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    m = runtime.convert_bytearray_to_object(bytearray(blob))
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    used = {op.opcodeIndex for sg in m.subgraphs for op in sg.operators}
    out = set()
    for i in used:
        oc = m.operatorCodes[i]
        code = runtime.get_builtin_code_from_operator_code(oc)
        out.add(oc.customCode.decode() if oc.customCode else names[code])
    return out


@pytest.fixture(scope="module")
def bundles(firmware_models, tmp_path_factory):
    out = {}
    for name in NAMES:
        d = tmp_path_factory.mktemp(name)
        out[name] = (d, c_bundle.write_bundle(firmware_models[name], d, f"leaf {name}/int8", source=f"{name}.tflite"))
    d = tmp_path_factory.mktemp("vela")
    out["vela"] = (d, c_bundle.write_bundle(firmware_models["vela"], d, "leaf ds_cnn/u55-128",
                                            source="ds_cnn_vela.tflite"))
    return out


def test_identifier():
    assert c_bundle.identifier("ds-cnn w64/b4 (prune 50%)") == "ds_cnn_w64_b4_prune_50"
    assert c_bundle.identifier("3x-leaf") == "m_3x_leaf"
    assert c_bundle.identifier("__Fancy__") == "fancy"
    assert c_bundle.identifier("***") == "model"


@pytest.mark.parametrize("which", ["ds_cnn", "vela"])
def test_model_array_compiles_and_holds_the_tflite(bundles, firmware_models, which, tmp_path):
    d, info = bundles[which]
    name = info["name"]
    (d / "main.c").write_text(f"""#include <stdio.h>
#include <stdint.h>
#include "{name}_model.h"
int main(int argc, char** argv) {{
  if (argc != 2 || ((uintptr_t){name}_model) % 16 != 0) return 2;
  FILE* f = fopen(argv[1], "wb");
  if (!f || fwrite({name}_model, 1, {name}_model_len, f) != {name}_model_len) return 1;
  return fclose(f) != 0;
}}
""")
    _run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c", f"{name}_model.c"], d)
    _run(["cc", "-std=c11", "-Wall", "-Werror", "-o", "main", "main.c", f"{name}_model.o"], d)
    _run([str(d / "main"), str(tmp_path / "out.tflite")], d)
    assert (tmp_path / "out.tflite").read_bytes() == firmware_models[which]
    # C++ friendly: the same source compiles as C++ (extern "C" from the header); without GNU
    # extensions the alignment falls back to _Alignas (C11) / alignas (C++11)
    _run(["c++", "-std=c++17", "-Wall", "-Werror", "-x", "c++", "-c", f"{name}_model.c", "-o", "cxx.o"], d)
    _run(["cc", "-std=c11", "-U__GNUC__", "-Wall", "-Werror", "-c", f"{name}_model.c", "-o", "c11.o"], d)
    _run(["c++", "-std=c++17", "-U__GNUC__", "-Wall", "-Werror", "-x", "c++", "-c", f"{name}_model.c", "-o", "cxx11.o"], d)


@pytest.mark.parametrize("which", [*NAMES, "vela"])
def test_op_resolver_lists_exactly_the_models_operators(bundles, firmware_models, which):
    d, info = bundles[which]
    blob = firmware_models[which]
    text = (d / f"{info['name']}_op_resolver.h").read_text()
    calls = re.findall(r"resolver\.(Add\w+)\(\)", text)
    expected = {c_bundle.CUSTOM_METHODS.get(op) or c_bundle.BUILTIN_METHODS[op] for op in _flatbuffer_ops(blob)}
    assert sorted(calls) == sorted(expected) and len(calls) == len(set(calls))
    assert "MicroMutableOpResolver<k" in text and f"OpCount = {len(calls)};" in text
    if which == "vela":
        assert calls == ["AddEthosU"]


@pytest.mark.parametrize("which", [*NAMES, "vela"])
def test_op_resolver_compiles_and_registers_against_stand_in(bundles, which, tmp_path):
    d, info = bundles[which]
    inc = _stand_in(tmp_path / "include")
    name = info["name"]
    camel = "".join(p.title() for p in name.split("_"))
    hdr = d / f"{name}_op_resolver.h"
    _run(["c++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-I", str(inc), "-x", "c++", str(hdr)], d)
    (tmp_path / "main.cc").write_text(f"""#include <cstdio>
#include "{hdr}"
int main() {{
  {camel}OpResolver r;
  if ({name}_register_ops(r) != kTfLiteOk) return 1;
  if ({name}_register_ops(r) != kTfLiteError) return 2;  // twice: duplicates refused
  tflite::MicroMutableOpResolver<k{camel}OpCount - 1> small;
  if (k{camel}OpCount > 1 && {name}_register_ops(small) != kTfLiteError) return 3;  // too small
  for (const auto& c : r.calls) std::printf("%s\\n", c.c_str());
  return 0;
}}
""")
    _run(["c++", "-std=c++17", "-Wall", "-Werror", "-I", str(inc), "-o", "reg", "main.cc"], tmp_path)
    assert _run([str(tmp_path / "reg")], tmp_path).split() == info["operators"]


@pytest.mark.parametrize("which", ["ds_cnn", "tiny_cnn", "vela"])
def test_arena_header(bundles, which, tmp_path):
    d, info = bundles[which]
    name = info["name"]
    text = (d / f"{name}_arena.h").read_text()
    size = int(re.search(rf"#define {name.upper()}_ARENA_SIZE (\d+)", text).group(1))
    assert size == info["arena"]["published"] and size % 16 == 0
    assert ("ESTIMATE" in text) == (which == "vela")
    (tmp_path / "a.c").write_text(f'#include "{d}/{name}_arena.h"\nunsigned char arena[{name.upper()}_ARENA_SIZE];\n')
    _run(["cc", "-std=c11", "-Wall", "-Werror", "-c", "a.c"], tmp_path)
    assert name in (d / "README.md").read_text()


def test_published_arena_from_bundle_allocates_and_10_percent_less_fails(bundles, firmware_models):
    for name in NAMES:
        size = bundles[name][1]["arena"]["published"]
        m = firmware_models[name]
        assert tflm_child("fits", m, size) and not tflm_child("fits", m, int(0.9 * size))


def test_vela_estimate_covers_velas_scratch(firmware_models):
    blob = firmware_models["vela"]
    est = tflite_file.vela_arena_estimate(blob)
    # the scratch tensor (Vela's SRAM need) holds the NPU's input and output (offline plan)
    plan = tflite_file._offline_plan(tflite_file._model(blob))
    assert sorted(v for v in plan.values() if v >= 0)[0] == 0
    assert est["head"] >= 28 * 28 and est["estimate"] == est["head"] + est["tail"]


def test_unknown_operator_is_named(firmware_models):
    """A model with a custom operator TFLM has no Add method for: the flatbuffer's code is renamed."""
    blob = firmware_models["vela"].replace(b"ethos-u", b"myop-xy")
    assert ("CUSTOM", "myop-xy") in tflite_file.operators(blob)
    with pytest.raises(c_bundle.UnsupportedOperator, match="'myop-xy'"):
        c_bundle.op_methods(blob)


def test_every_method_exists_in_tflms_header():
    """Every Add method the bundle calls is one of the real header's (REAL_ADD_METHODS)."""
    names = set(c_bundle.BUILTIN_METHODS.values()) | set(c_bundle.CUSTOM_METHODS.values())
    assert names <= set(REAL_ADD_METHODS)
