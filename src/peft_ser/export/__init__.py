"""Deployment formats of a trained model: ONNX export (`onnx`); its onnxruntime backend is
`peft_ser.inference.onnx_model`, which needs no PyTorch."""
