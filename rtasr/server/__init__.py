"""The asyncio shell: the websocket and HTTP server, one task set per connection, session
set-up for every dialect, uploads and the REST dialects (`rest/`), metrics."""

from .app import Server

__all__ = ["Server"]
