"""Django system checks of better_tenant (settings and models; no database needed)."""

from __future__ import annotations
