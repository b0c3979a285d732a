"""The operator side: the ``maas`` CLI, the registry's write side, docker-free local emulation
(moto server, invoke, serve), the generators (template, dashboard, openapi, events) and the demo.

It imports the layer (``maas``) and the trainers (``training``); neither imports it.
"""
