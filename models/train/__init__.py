"""tellme.models.train: BitNet b1.58 quantisation-aware training in Keras 3 on TensorFlow.

Needs the `train` extra (tensorflow, keras). Importing this package does not import TensorFlow;
its submodules do. `python -m tellme.models.train --help` trains a model and exports a Hugging Face
BitNet checkpoint.
"""
