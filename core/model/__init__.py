"""tf_keras models: loading and saving them, the baseline, the fine-tuning loop."""
