"""What ``swinir export`` and :func:`swinir.export_onnx` offer, as plain data (no torch), so that the
command's ``--help`` can list it without importing the exporter."""

__all__ = ["ONNX_OPSETS", "DEFAULT_OPSET", "DTYPE_NAMES"]

# ONNX opsets the torch.onnx exporter writes that ONNX Runtime runs, and the element types offered (bf16
# is not: ONNX Runtime's CPU provider lacks most bf16 kernels).
ONNX_OPSETS = range(18, 24)
DEFAULT_OPSET = 20
DTYPE_NAMES = {"fp32": "float32", "fp16": "float16"}
