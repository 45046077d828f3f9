"""Benchmarks of the whole platform (``manage.py bench``)."""
