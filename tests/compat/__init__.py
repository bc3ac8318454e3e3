"""The public IMKIT Postman collection, run against Parley with npm ``newman``.

``IMKit-API.postman_collection.json`` and ``IMKit-API.postman_environment.json`` are
verbatim copies of ``public/collections/`` of the IMKIT docs repository
(https://github.com/imkit/api-doc, commit a255287; the collection's ``_postman_id`` is
``imkit-api-doc-collection-v1``), vendored so that a clean clone runs them. Replace both
files together to follow a newer collection.

- ``seed.py``: puts in a running Parley what the collection's variables point at.
- ``runner.py``: runs the collection with newman, reseeding where a request destroys
  what a later one needs, and reads every answer back from newman's JSON report.
- ``test_postman_collection.py``: the CI check; ``scripts/compat`` is the same by hand.
- ``node/``: newman, pinned by ``package-lock.json`` (``npm ci`` there).
"""
