"""Shared helpers for the lab scripts: flags, data, models, maps, HOG, plots and timelines.

A student who copies one lab script plus this folder has everything it needs.
Nothing here imports from ``tfrecord_tools``'s internals except the assignment's
use of its public API.
"""
