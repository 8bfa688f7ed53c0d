"""Tests of better_webhooks."""
