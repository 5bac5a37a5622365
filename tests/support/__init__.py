"""Helpers the tests (and the benchmark) share: servers to run, a wire client to drive them.

Fixtures live in tests/conftest.py; plain helpers live here.
"""
