"""Primitives shared by the better apps: settings, scopes, durations, JWT, HTTP, Celery."""
