"""TensorFlow runtime set-up: the Keras backend and a small thread budget (the machine is shared)."""

from __future__ import annotations

import os


def configure_tensorflow(intra_op_threads: int = 2, inter_op_threads: int = 1) -> None:
    """Select the TensorFlow backend for Keras and cap TF's thread pools; call before any TF op runs."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    except RuntimeError:
        pass  # TF is already initialised (e.g. a second call in one process): keep its pools.
