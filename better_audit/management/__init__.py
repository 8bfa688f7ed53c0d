"""Management commands of better_audit."""
