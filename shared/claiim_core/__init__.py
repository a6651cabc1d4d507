"""The pure core of claiim: schemas, canonical encoding, policy evaluation, the registry projection.

Nothing in this package does I/O, reads the environment or the clock: time and randomness
come in as arguments. The services in ``services/`` and the SDK are the I/O shell around it.
A test (``tests/unit/test_purity.py``) keeps it that way.
"""
