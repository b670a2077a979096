"""Data into models: TFX Examples I/O, the tf.data pipelines, a user's module file, input checks."""
