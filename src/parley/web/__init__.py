"""The Web SDK and the Web URL: ``/sdk/imkit.js`` (``window.IMKitUI.init``), the
Socket.IO client it bundles, and ``/chat?token=…``, the same chat UI as a page of its own
for the app served on the request's Host. See ``routes`` and ``assets``."""

from parley.web.routes import routes

__all__ = ["routes"]
