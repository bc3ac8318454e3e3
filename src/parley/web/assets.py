"""The Web SDK's files, read once from the package and served from memory.

``/sdk/imkit.js`` is served as one bundle: the npm ``socket.io-client`` browser build
(``static/socket.io.min.js``, MIT, its licence in ``static/socket.io.LICENSE``) wrapped in a
function that hands it a private ``module`` object, followed by ``static/imkit.js``. The
Socket.IO build then takes its CommonJS branch and returns its ``io`` to the SDK alone:
nothing lands on ``window`` and a page's own AMD loader or Socket.IO client is left alone.
The build itself is also served as ``/sdk/socket.io.min.js``, byte for byte as published.

Every file carries an ETag; the version (a digest of all of them) goes into the URLs that
Parley's own pages and the SDK write (``?v=…``), which may then be cached for a year.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources

# The npm release bundled in static/ (the one tests/gateway/node pins).
SOCKET_IO_CLIENT_VERSION = "4.8.4"
_SOURCE_MAP = b"//# sourceMappingURL=socket.io.min.js.map"

_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".LICENSE": "text/plain; charset=utf-8",
}
# Served under /sdk/<name>, as stored (the SDK bundle is built below).
_PLAIN_FILES = ("imkit.css", "page.css", "chat.js", "socket.io.min.js", "socket.io.LICENSE")


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None  # None when compression would not pay
    media_type: str
    etag: str  # strong ETag of ``body``; the gzipped form's is derived from it


def _asset(body: bytes, media_type: str) -> Asset:
    digest = hashlib.sha256(body).hexdigest()[:20]
    packed = gzip.compress(body, mtime=0)
    return Asset(body, packed if len(packed) < len(body) * 0.9 else None, media_type, digest)


def _media_type(name: str) -> str:
    for suffix, media_type in _MEDIA_TYPES.items():
        if name.endswith(suffix):
            return media_type
    return "application/octet-stream"


def bundle(socket_io: bytes, sdk: bytes, version: str) -> bytes:
    """The served ``imkit.js``: the Socket.IO build in a closure, then the SDK, which
    finds ``io`` and ``PARLEY_SDK_VERSION`` in that closure."""
    head = (
        f"/*! Parley Web SDK {version}. Includes the Socket.IO client "
        f"{SOCKET_IO_CLIENT_VERSION} (MIT License: see socket.io.LICENSE next to this file). */\n"
        "(function () {\n"
        "var module = { exports: {} }, exports = module.exports, define;\n"
    ).encode()
    middle = f'\n;var io = module.exports, PARLEY_SDK_VERSION = "{version}";\n'.encode()
    return head + socket_io.replace(_SOURCE_MAP, b"") + middle + sdk + b"\n})();\n"


class Assets:
    """Every file under ``/sdk/``, and the version their URLs carry."""

    def __init__(self) -> None:
        static = resources.files("parley.web") / "static"
        sources = {name: (static / name).read_bytes() for name in (*_PLAIN_FILES, "imkit.js")}
        self.version = hashlib.sha256(
            b"\0".join(sources[name] for name in sorted(sources))
        ).hexdigest()[:12]
        self._files = {name: _asset(sources[name], _media_type(name)) for name in _PLAIN_FILES}
        self._files["imkit.js"] = _asset(
            bundle(sources["socket.io.min.js"], sources["imkit.js"], self.version),
            _media_type("imkit.js"),
        )

    def get(self, name: str) -> Asset | None:
        return self._files.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self._files)
