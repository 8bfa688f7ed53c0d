"""Management commands of better_tenant."""
