"""Benchmarks: every backend measured with one loop against the TensorFlow baseline (`fmnist-edge bench`)."""
