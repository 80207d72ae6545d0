"""rtasr: a realtime speech-recognition server over websockets."""

from __future__ import annotations

__version__ = "0.1.0"
