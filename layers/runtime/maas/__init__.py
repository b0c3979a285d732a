"""maas: the serving runtime shared by every model function (the Lambda layer's package).

It imports neither scikit-learn nor TensorFlow: Lambda runs ONNX only.
"""

from __future__ import annotations

__version__ = "0.1.0"
