"""A small multi-tenant SaaS built on the better suite."""
