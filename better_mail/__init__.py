"""Typed MJML templates sent through any EMAIL_BACKEND, every send logged."""
