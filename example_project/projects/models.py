"""Data of the example SaaS: tenant-scoped projects, tasks, memberships and invites, plus the inbox
of the local webhook receiver (which stands for a customer's server, outside the tenancy).
"""

from django.conf import settings
from django.db import models

from better_tenant.models import TenantModel

ROLES = [("owner", "Owner"), ("admin", "Admin"), ("member", "Member")]
ADMIN_ROLES = ("owner", "admin")


class Project(TenantModel):
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "projects"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="projects_tenant_name_uniq"),
        ]

    def __str__(self) -> str:
        return self.name


class Task(TenantModel):
    # TenantRLS adds a composite (tenant_id, project_id) foreign key next to this one.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tasks")
    title = models.CharField(max_length=200)
    done = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "tasks"
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.title


class Membership(TenantModel):
    """A user's role in one tenant.

    Tenant-scoped on purpose: who works at Acme is Acme's data, so row-level security keeps each
    tenant's member list out of every other tenant's queries. The checks that need it run where
    the tenant is known anyway: token issuance inside ``run_as(tenant)``, and the API's
    authentication inside the request's tenant scope, where "is this user a member?" is a plain
    ``Membership.objects.filter(user=user)`` that PostgreSQL confines to that tenant. Users
    themselves are Django's ``auth.User``, shared by all tenants, since one person may belong to
    several.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=ROLES, default="member")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "memberships"
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="memberships_tenant_user_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} ({self.role})"

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES


class Invite(TenantModel):
    """An invitation to join a tenant; the token that carries it is signed, never stored."""

    email = models.EmailField()
    role = models.CharField(max_length=10, choices=ROLES, default="member")
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "invites"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.email


class ReceiverInbox(models.Model):
    """One inbox of the local webhook receiver and the signing secret it verifies with.

    The receiver plays the customer's server, which keeps its copy of the endpoint secret in its
    own storage; here that storage is this table.
    """

    slug = models.SlugField(max_length=63, unique=True)
    secret = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "receiver_inboxes"
        verbose_name_plural = "receiver inboxes"

    def __str__(self) -> str:
        return self.slug


class ReceivedWebhook(models.Model):
    """A webhook that reached the local receiver with a valid signature."""

    inbox = models.ForeignKey(ReceiverInbox, on_delete=models.CASCADE, related_name="received")
    webhook_id = models.CharField(max_length=100)
    event = models.CharField(max_length=200)
    data = models.JSONField(default=dict)
    signature = models.TextField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "received_webhooks"
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["inbox", "webhook_id"], name="received_webhooks_inbox_id_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.webhook_id}"
