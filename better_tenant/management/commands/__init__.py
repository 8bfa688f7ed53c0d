"""The better_tenant management command."""
