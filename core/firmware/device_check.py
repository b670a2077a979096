"""A leaf on the device runtime: TFLM's interpreter runs its INT8 model on the first few eval examples
next to LiteRT, and measures its tensor arena. The leaf.json fields these numbers go to."""
import logging

from collabopt.core.firmware import tflm

log = logging.getLogger("collabopt")

ARENA_BYTES = "tflm_arena_bytes"  # the arena to declare on the CPU path (TFLM-measured, + 16 B margin)
ERROR = "tflm_error"              # why TFLM could not load or run the leaf (None: it did)
FIELDS = ("tflm_examples", "tflm_max_lsb", "tflm_top1_differ", "tflm_top1_differ_rate", "tflm_metric",
          "tflm_litert_metric", "tflm_seconds", ARENA_BYTES, ERROR)  # scalars: MLMD properties too


def leaf_numbers(tflite_bytes, data_spec, training, max_examples=tflm.CHECK_EXAMPLES):
    """{FIELDS..., 'tflm_lsb_counts', 'tflm_arena': {recorded, minimal, published, head, tail}} of an
    INT8 leaf on the eval split (data_spec.eval_split, its first `max_examples` examples). TFLM failing
    to load or run the model is a finding, not an error: tflm_error says why, the numbers are None."""
    from collabopt.core.data import examples_io  # TensorFlow: not for the readers of FIELDS (mlmd.results)
    try:
        arena = tflm.arena(tflite_bytes)
        files = examples_io.split_files(data_spec.examples_uri, data_spec.eval_split)
        found = tflm.check(tflite_bytes, data_spec.batches(data_spec.eval_split, files, max_examples), training,
                           data_spec.target, max_examples)
    except RuntimeError as e:  # TFLM's own refusal (an operator it lacks, a tensor it cannot allocate)
        log.info("TFLM cannot run the leaf: %s", e)
        return {**dict.fromkeys(FIELDS), ERROR: " ".join(str(e).split()) or type(e).__name__}
    return {**found, ARENA_BYTES: arena["published"], "tflm_arena": arena, ERROR: None}
