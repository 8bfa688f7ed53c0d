"""The ``better_audit`` management command."""
