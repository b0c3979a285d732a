"""The bottom of the layer: settings, errors, registry reads, store, predictor, tasks, pipeline.

Nothing here imports an adapter (``maas.http``, ``maas.events``) or the entry (``maas.entry``).
"""
