"""tickpath test suite (a package, so that `tests.factories` never resolves to a stray site-packages `tests`)."""
