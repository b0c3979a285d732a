"""Decoder LLMs: import (GGUF, Hugging Face folder, exported ONNX folder), export with a KV cache,
the quality gate, quantised variants and the ``causal-lm`` version folder (see ``importer``)."""
