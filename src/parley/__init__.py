"""Parley: a self-hostable, multi-tenant chat server that speaks the IMKIT Platform API."""

__version__ = "0.1.0"
