"""Tests of the built-in policies (a package, so that test module names need not be unique)."""
