"""The Lambda entry points: dispatch by event shape to an adapter, per-invocation metrics,
SnapStart hooks. The only package that imports the adapters.
"""
