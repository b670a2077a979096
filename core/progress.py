"""Progress lines a user reads. No TensorFlow here: the CLI prints these before TF is imported."""


def duration(seconds):
    """`42 s`, `3 min 05 s`: a time a user reads in a progress line."""
    seconds = int(round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"
