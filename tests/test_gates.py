"""The gate functions on their own: each requirement, preservation, and the retraining comparison."""
from collabopt.core.evaluation import gates

LEAF = {"int8_accuracy": 0.85, "gzip_bytes": 20_000, "preservation_failures": [],
        "npu": {"ethos-u55-128": {"inference_time_s": 0.0020}, "ethos-u65-256": {"inference_time_s": 0.0010}}}


def test_each_requirement_alone():
    assert gates.gate(LEAF, {}, 0.86) == []
    assert gates.gate(LEAF, {"max_int8_accuracy_drop_pp": 1.0}, 0.86) == []
    assert gates.gate(LEAF, {"max_int8_accuracy_drop_pp": 0.5}, 0.86) == [
        "INT8 accuracy 85.00% is 1.00 pp below the baseline's 86.00% (max drop 0.5 pp)"]
    assert gates.gate(LEAF, {"max_gzip_bytes": 20_000}, 0.85) == []
    assert gates.gate(LEAF, {"max_gzip_bytes": 19_999}, 0.85) == ["gzip size 20,000 B > max 19,999 B"]
    # NPU time: the named target, else the first one estimated
    assert gates.gate(LEAF, {"max_npu_inference_time_s": 0.0015}, 0.85) == [
        "ethos-u55-128 inference time 2.000 ms > max 1.500 ms"]
    assert gates.gate(LEAF, {"max_npu_inference_time_s": 0.0015, "npu_target": "ethos-u65-256"}, 0.85) == []
    assert gates.gate(LEAF, {"max_npu_inference_time_s": 0.0015, "npu_target": "ethos-u85-256"}, 0.85) == [
        "no NPU estimate for 'ethos-u85-256' to check max_npu_inference_time_s"]


def test_device_gates():
    """TFLM: the arena against max_arena_bytes, the LSB difference against max_tflm_lsb, and a leaf the
    device runtime cannot run is not blessed when a device requirement is set."""
    leaf = {**LEAF, "tflm_arena_bytes": 33_168, "tflm_max_lsb": 2, "tflm_examples": 64, "tflm_error": None}
    assert gates.gate(leaf, {"max_arena_bytes": 33_168, "max_tflm_lsb": 2}, 0.85) == []
    assert gates.gate(leaf, {"max_arena_bytes": 32_768, "max_tflm_lsb": 1}, 0.85) == [
        "TFLM tensor arena 33,168 B > max 32,768 B",
        "TFLM's answers differ from LiteRT's by 2 LSB > max 1 LSB (on 64 eval examples)"]
    assert gates.gate(LEAF, {"max_arena_bytes": 1}, 0.85) == ["no TFLM measurement to check max_arena_bytes"]
    broken = {**leaf, "tflm_arena_bytes": None, "tflm_max_lsb": None, "tflm_error": "Didn't find op for builtin opcode 'X'"}
    assert gates.gate(broken, {"max_arena_bytes": 65_536}, 0.85) == [
        "TFLM's interpreter cannot run it: Didn't find op for builtin opcode 'X'"]
    assert gates.gate(broken, {}, 0.85) == []  # no device requirement: reported (tflm_error), not gated


def test_vela_sram_gate():
    """max_sram_bytes: Vela's SRAM on the requirement's npu_target, else on every target; the search
    judges its own target by the same rule (gates.over)."""
    from collabopt.search import space
    leaf = {**LEAF, "npu": {"ethos-u55-128": {"inference_time_s": 0.002, "sram_bytes": 40_960},
                            "ethos-u65-256": {"inference_time_s": 0.001, "sram_bytes": 24_576}}}
    assert gates.gate(leaf, {"max_sram_bytes": 40_960}, 0.85) == []
    assert gates.gate(leaf, {"max_sram_bytes": 32_768}, 0.85) == ["ethos-u55-128 Vela SRAM 40,960 B > max 32,768 B"]
    assert gates.gate(leaf, {"max_sram_bytes": 16_384}, 0.85) == [
        "ethos-u55-128 Vela SRAM 40,960 B > max 16,384 B", "ethos-u65-256 Vela SRAM 24,576 B > max 16,384 B"]
    assert gates.gate(leaf, {"max_sram_bytes": 32_768, "npu_target": "ethos-u65-256"}, 0.85) == []
    assert gates.gate(leaf, {"max_sram_bytes": 32_768, "npu_target": "ethos-u85-256"}, 0.85) == [
        "no NPU estimate for 'ethos-u85-256' to check max_sram_bytes"]
    assert gates.gate({**LEAF, "npu": {}}, {"max_sram_bytes": 1}, 0.85) == ["no NPU estimate to check max_sram_bytes"]
    assert space.misses({"sram_bytes": 40_960}, {"max_sram_bytes": 32_768}) == {"max_sram_bytes": 8_192}
    assert space.misses({"sram_bytes": 40_960}, {"max_sram_bytes": 40_960}) == {}


def test_preservation_and_several_reasons_together():
    broken = {**LEAF, "preservation_failures": ["pw_1: 23 distinct values in an output channel > 8 clusters",
                                                "pw_2: sparsity 0.310 < 0.480"]}
    assert gates.gate(broken, {"max_gzip_bytes": 1}, 0.85) == [
        "gzip size 20,000 B > max 1 B",
        "preservation: pw_1: 23 distinct values in an output channel > 8 clusters; pw_2: sparsity 0.310 < 0.480"]


def test_not_worse_than_the_deployed_leaf():
    deployed = {**LEAF, "version": "7"}
    assert gates.not_worse(LEAF, deployed) == []  # equal is not worse
    better = {**LEAF, "int8_accuracy": 0.86, "gzip_bytes": 19_000,
              "npu": {"ethos-u55-128": {"inference_time_s": 0.0019}}}
    assert gates.not_worse(better, deployed) == []
    worse = {**LEAF, "int8_accuracy": 0.84, "gzip_bytes": 21_000,
             "npu": {"ethos-u55-128": {"inference_time_s": 0.0021}}}
    assert gates.not_worse(worse, deployed) == [
        "worse than deployed version 7: INT8 accuracy 84.00% < 85.00%",
        "worse than deployed version 7: gzip size 21,000 B > 20,000 B",
        "worse than deployed version 7: ethos-u55-128 inference time 2.1000 ms > 2.0000 ms"]
    # compared on the requirement's target when one is named
    slower_u65 = {**LEAF, "npu": {**LEAF["npu"], "ethos-u65-256": {"inference_time_s": 0.0011}}}
    assert gates.not_worse(slower_u65, deployed, {"npu_target": "ethos-u65-256"}) == [
        "worse than deployed version 7: ethos-u65-256 inference time 1.1000 ms > 1.0000 ms"]
    assert gates.not_worse(slower_u65, deployed) == []  # first common target: u55, unchanged
