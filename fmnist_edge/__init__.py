"""fmnist-edge: train Fashion-MNIST CNNs with Keras, convert them to OpenVINO/ONNX, and run them on the edge."""

__version__ = "0.1.0"
