"""tickpath test suite.

A package, so that `tests.factories` never resolves to a stray site-packages `tests`.
"""
