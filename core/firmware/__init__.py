"""What the firmware engineer receives: the leaf checked on TensorFlow Lite Micro, its tensor arena,
and a C bundle for a TFLM project."""
