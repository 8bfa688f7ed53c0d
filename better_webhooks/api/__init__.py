"""HTTP API of better_webhooks (Django REST framework): endpoints, event catalog, deliveries."""
