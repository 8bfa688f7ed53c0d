"""The DRF API of the example SaaS: sign-up, tokens, projects, tasks, invites, the audit trail."""
