"""StreamingT2V model definitions (PyTorch), TorchScript export and manifest writer."""
