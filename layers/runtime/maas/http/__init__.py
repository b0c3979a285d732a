"""HTTP adapters: the plain routes and the Open Inference Protocol routes (Powertools Routers),
the server-wide routes, and the one mapping from errors to HTTP responses.

Imports the core only; never ``maas.events`` or ``maas.entry``.
"""
