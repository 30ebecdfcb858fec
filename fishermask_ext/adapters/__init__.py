"""Adapters: the FisherMask and BAIT strategies inside other active-learning frameworks.

An empty room for now: a later change fills it. An adapter is a thin layer over the public API
(`fishermask_ext.al.strategies.get(...).select(...)`, or `fishermask_ext.select_batch` on
embeddings from `fishermask_ext.nn`); it may import `fishermask_ext.al` and the framework it
adapts, and nothing in the backend or the driver imports it (docs/DEVELOPING.md).
"""
