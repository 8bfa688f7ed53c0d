"""Primitives shared by the better apps: settings objects, context scopes, durations."""
