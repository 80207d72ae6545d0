"""The one model: loading it, deciding what decodes next, and decoding batches in worker
threads. Only `engine.py` and `decoder.py` import faster-whisper and CTranslate2."""

from .engine import Engine, effective_config, resolve_model

__all__ = ["Engine", "effective_config", "resolve_model"]
