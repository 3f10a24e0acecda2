"""Deployment formats of a trained model: ONNX export (`onnx`) and its onnxruntime backend
(`runtime`, which needs no PyTorch)."""
