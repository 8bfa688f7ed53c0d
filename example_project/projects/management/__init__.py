"""Management commands of the example SaaS."""
