"""The web client's static files (web/), served on the websocket's port.

`GET /` is web/index.html; other paths map to files under web/ and nothing outside it: a path
that resolves outside the root (`..`, encoded or not, symlinks) or names no file is a 404.
"""

from __future__ import annotations

import mimetypes
from functools import lru_cache
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote

from websockets.datastructures import Headers
from websockets.http11 import Response

_PACKAGE = Path(__file__).resolve().parent.parent
# Installed: rtasr/web (pyproject maps the repository's web/ there); a checkout: ../web.
_CANDIDATES = (_PACKAGE / "web", _PACKAGE.parent / "web")
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"}
_SECURITY = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; "
                                "img-src 'self' data: blob:; media-src 'self' blob:"),
)


@lru_cache(maxsize=1)
def web_root() -> Path | None:
    return next((p for p in _CANDIDATES if (p / "index.html").is_file()), None)


def response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-cache"), *_SECURITY])
    return Response(status.value, status.phrase, headers, body)


def resolve(path: str, root: Path | None = None) -> Path | None:
    """The file under the web root that URL `path` names, or None."""
    root = root or web_root()
    if root is None:
        return None
    rel = unquote(path.partition("?")[0]).lstrip("/") or "index.html"
    if "\x00" in rel or "\\" in rel:
        return None
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()) or not target.is_file():
        return None
    return target


def serve_file(path: str) -> Response | None:
    """A 200 with the file `path` names, or None when there is no such file."""
    target = resolve(path)
    if target is None:
        return None
    content_type = _TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0]
    return response(HTTPStatus.OK, target.read_bytes(),
                    content_type or "application/octet-stream")
