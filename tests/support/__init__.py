"""Helpers shared by the test packages and the example's tests; conftest.py files import them."""
