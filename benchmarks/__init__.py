"""Benchmarks: ``make bench`` runs ``benchmarks/run.py``. They print figures; nothing
here asserts on a timing."""
