"""Fault injection: nodes, Redis and PostgreSQL killed under load, and stalled readers,
judged by a queue checker (nothing acked lost or doubled, nothing let in, order kept).

``pytest tests/faults`` runs the short form; ``scripts/faults`` (``python -m
tests.faults``) the full length, with a table of counts.
"""
