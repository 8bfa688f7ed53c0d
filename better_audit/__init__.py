"""Automatic audit log of inserts, updates and deletes, with actor context and enrichment."""
