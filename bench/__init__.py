"""pichat's benchmark: pichat against a naive broadcaster, on loopback, same load.

``make bench`` runs :mod:`bench.run`; ``docs/benchmarks.md`` says how to read it.
"""
