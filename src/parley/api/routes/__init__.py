"""One module per area of the API. Every route is an ``AuthorizedRoute``: it is looked up
in the permission table and its caller authenticated before its body is read.

Handlers take the ``Request`` and read the caller with ``caller_of`` / ``user_of`` rather
than through dependency injection: FastAPI's dependency solving cost more per request
than the whole of authentication (measured with bench/auth.py)."""
