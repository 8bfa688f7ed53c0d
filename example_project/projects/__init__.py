"""Projects and tasks: the tenant-scoped data of the example SaaS."""
