"""HTTP adapters: the plain routes and the Open Inference Protocol routes (Powertools Routers),
the server-wide routes, and the one mapping from errors to HTTP responses.

Imports the core only; never ``maas.events`` or ``maas.entry``.
"""

from maas.http.powertools import defer_package_init

defer_package_init()  # before any module of maas.http imports the Powertools resolver
