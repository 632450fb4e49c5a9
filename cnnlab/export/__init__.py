"""Export: a trained model to ONNX, and to and from PyTorch."""
