"""Signed, retried, logged outgoing webhooks."""
