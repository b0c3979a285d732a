"""Event adapters: S3 batch files (streamed rows, multipart writer) and SQS requests.

Imports the core only; never ``maas.http`` or ``maas.entry``.
"""
