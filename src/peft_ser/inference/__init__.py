"""Using a trained model: loading it (`loading`), running it (`backends`: `torch_model`,
`onnx_model`), cutting recordings into segments (`segments`, `vad`, `recordings`), predicting
(`predict`), and the files around the ``predict`` command (`files`, `timeline`)."""
