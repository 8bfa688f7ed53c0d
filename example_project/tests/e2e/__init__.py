"""The example SaaS end to end: its API, admin, events and demo commands, and in a browser."""
