"""A leaf on the device runtime: TFLM's interpreter runs its INT8 model on the first few eval examples
next to LiteRT, and measures its tensor arena. The leaf.json fields these numbers go to."""
import logging

from collabopt.core.evaluation import gates
from collabopt.core.firmware import tflm

log = logging.getLogger("collabopt")
TIMEOUT_S = 600  # the check of tflm.check_examples takes seconds; a hung native call must not hang the run

ARENA_BYTES = gates.ARENA_BYTES  # the arena to declare on the CPU path (TFLM-measured, + 16 B margin)
ERROR = "tflm_error"              # why TFLM could not load or run the leaf (None: it did)
FIELDS = ("tflm_examples", "tflm_max_lsb", "tflm_top1_differ", "tflm_top1_differ_rate", "tflm_metric",
          "tflm_litert_metric", "tflm_seconds", ARENA_BYTES, ERROR)  # scalars: MLMD properties too


def leaf_numbers(tflite_bytes, data_spec, training, max_examples=tflm.CHECK_EXAMPLES):
    """{FIELDS..., 'tflm_lsb_counts', 'tflm_arena': {recorded, minimal, published, head, tail}} of an
    INT8 leaf on the eval split (data_spec.eval_split, its first `max_examples` examples). TFLM failing
    to load or run the model is a finding, not an error: tflm_error says why, the numbers are None."""
    import tempfile

    from collabopt.core.data import examples_io  # TensorFlow: not for the readers of FIELDS (mlmd.results)
    from collabopt.core.firmware import isolated

    files = examples_io.split_files(data_spec.examples_uri, data_spec.eval_split)
    features, labels = next(iter(data_spec.batches(data_spec.eval_split, files, max_examples)))
    with tempfile.TemporaryDirectory(prefix="collabopt-tflm-") as folder:
        isolated.write_inputs(folder, tflite_bytes, features, labels, training.eval_metric, training.top_k,
                              data_spec.target)
        found = isolated.run(folder, TIMEOUT_S)  # a child process: TFLM's crash must not end the run
    if "error" in found:
        log.info("TFLM cannot run the leaf: %s", found["error"])
        return {**dict.fromkeys(FIELDS), ERROR: found["error"]}
    return {**found["check"], ARENA_BYTES: found["arena"]["published"], "tflm_arena": found["arena"], ERROR: None}
