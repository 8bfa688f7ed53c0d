"""Audit descriptions of the example SaaS (named in ``BETTER_AUDIT["ENRICHMENT"]``)."""

from typing import Any


def describe_user_change(change: Any) -> str:
    """One readable line for a change to ``auth_user``; the images it sees are already redacted."""
    row = change.after or change.before or {}
    who = row.get("email") or row.get("username") or f"user {change.record_id}"
    if change.operation == "INSERT":
        return f"Account {who} created"
    if change.operation == "DELETE":
        return f"Account {who} deleted"
    # Redacted fields (the password) are left out of the diff as well.
    fields = (change.diff or {}).get("changed_fields") or []
    return f"Account {who} updated" + (f": {', '.join(fields)}" if fields else "")
