"""What the SaaS does, shared by the API, the demo commands and the tests.

Each change and the webhook that announces it are written in one transaction: a rolled-back change
leaves neither the row, nor its audit entries, nor a delivery behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

import better_audit as audit
import better_mail
import better_webhooks as webhooks
from better_tenant import get_tenant, run_as
from better_tenant.api import create_tenant
from better_tenant.exceptions import DuplicateTenantSlug, InvalidTenantSlug
from better_tenant.lookup import resolve_to_id
from better_tenant.models import Tenant
from example_project.projects import events
from example_project.projects.auth import issue_token
from example_project.projects.mail import WelcomeEmail
from example_project.projects.models import Invite, Membership, Project, Task

INVITE_SALT = "example_project.projects.invite"
INVITE_MAX_AGE = timedelta(days=7)
MAIL_FROM = "Example SaaS <hello@example-saas.test>"


class ServiceError(Exception):
    """A refusal the API answers with ``{"error": message, "code": code}`` and ``status``."""

    def __init__(self, message: str, code: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


# --- projects and tasks --------------------------------------------------------------------------


def create_project(name: str, actor_id: Any = None) -> Project:
    """Create a project in the tenant in scope and announce it (``project.created``).

    Raises ServiceError ``DUPLICATE_NAME`` (409) when the tenant has a project of that name.
    """
    try:
        with transaction.atomic():
            project = Project.objects.create(name=name)
            webhooks.send(events.PROJECT_CREATED, events.project_created(project, actor_id))
    except IntegrityError as exc:
        raise ServiceError(
            f"This tenant already has a project named {name!r}.", "DUPLICATE_NAME", 409
        ) from exc
    return project


def rename_project(project: Project, name: str) -> Project:
    try:
        with transaction.atomic():
            project.name = name
            project.save(update_fields=["name"])
    except IntegrityError as exc:
        raise ServiceError(
            f"This tenant already has a project named {name!r}.", "DUPLICATE_NAME", 409
        ) from exc
    return project


def complete_task(task_id: int, actor_id: Any = None) -> tuple[Task, bool]:
    """Mark a task done and announce it (``task.completed``); returns (task, newly completed).

    Completing a task that is already done changes nothing and sends nothing. Raises
    ``Task.DoesNotExist`` for a task the tenant in scope does not have.
    """
    with transaction.atomic():
        # The row lock makes two concurrent completions send one webhook, not two.
        task = Task.objects.select_for_update().get(pk=task_id)
        if task.done:
            return task, False
        task.done = True
        task.completed_at = timezone.now()
        task.save(update_fields=["done", "completed_at"])
        webhooks.send(events.TASK_COMPLETED, events.task_completed(task, actor_id))
    return task, True


# --- sign-up, invites and tokens -----------------------------------------------------------------


@dataclass(frozen=True)
class SignedUp:
    user: Any
    tenant: Tenant
    membership: Membership
    new_user: bool
    new_tenant: bool
    mail: Any


def _normal_email(email: str) -> str:
    return email.strip().lower()


def _check_password(password: str, user: Any = None) -> None:
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ServiceError(" ".join(exc.messages), "WEAK_PASSWORD") from exc


def sign_up(
    email: str,
    password: str,
    *,
    tenant_name: str | None = None,
    tenant_slug: str | None = None,
    invite: str | None = None,
    app_url: str = "http://127.0.0.1:8000/",
) -> SignedUp:
    """Create an account and its first membership, and queue the welcome mail on commit.

    With ``tenant_name`` (and optionally ``tenant_slug``) a new tenant is created and the user
    owns it; the email must be new. With ``invite`` (a token from ``create_invite``) the user joins
    the inviting tenant with the invited role; an existing account joins too when the password
    is its own. Everything happens in one transaction: the mail leaves only if it commits.
    """
    email = _normal_email(email)
    User = get_user_model()
    with transaction.atomic(), audit.merge_audit_context(reason="self-service sign-up"):
        if invite:
            return _join_by_invite(email, password, invite, app_url)
        if not tenant_name or not tenant_name.strip():
            raise ServiceError(
                "Give tenant_name to create a tenant, or invite to join one.", "TENANT_REQUIRED"
            )
        if User.objects.filter(username=email).exists():
            raise ServiceError(
                f"An account for {email} exists: sign in with POST /api/auth/token, or ask a "
                "tenant's owner for an invite.",
                "EMAIL_TAKEN",
                409,
            )
        _check_password(password)
        try:
            tenant = create_tenant(tenant_name, tenant_slug or None)
        except DuplicateTenantSlug as exc:
            raise ServiceError(str(exc), "TENANT_EXISTS", 409) from exc
        except InvalidTenantSlug as exc:
            raise ServiceError(str(exc), "INVALID_TENANT") from exc
        # Inside the tenant's scope, so the account's audit entries belong to the tenant's trail.
        with run_as(tenant):
            user = User.objects.create_user(username=email, email=email, password=password)
            membership = Membership.objects.create(user=user, role="owner")
            mail = _welcome(user, tenant, "owner", app_url)
        return SignedUp(user, tenant, membership, True, True, mail)


def _join_by_invite(email: str, password: str, token: str, app_url: str) -> SignedUp:
    User = get_user_model()
    try:
        claims = signing.loads(token, salt=INVITE_SALT, max_age=int(INVITE_MAX_AGE.total_seconds()))
    except signing.SignatureExpired as exc:
        raise ServiceError("This invite has expired; ask for a new one.", "INVITE_EXPIRED") from exc
    except signing.BadSignature as exc:
        raise ServiceError("This invite is not valid.", "INVALID_INVITE") from exc
    gone = ServiceError("The tenant of this invite no longer exists.", "INVALID_INVITE")
    tenant_id = resolve_to_id(claims.get("tenant"))
    if tenant_id is None:
        raise gone
    with run_as(tenant_id):
        # A tenant scope reads its own row of tenants, and only that one.
        tenant = get_tenant()
        if tenant is None:
            raise gone
        invite = Invite.objects.select_for_update().filter(pk=claims.get("invite")).first()
        if invite is None:
            raise ServiceError("This invite was withdrawn.", "INVALID_INVITE")
        if invite.accepted_at is not None:
            raise ServiceError("This invite has been used already.", "INVITE_USED", 409)
        if _normal_email(invite.email) != email:
            raise ServiceError(
                "This invite was sent to another email address.", "INVITE_EMAIL_MISMATCH"
            )
        user = User.objects.filter(username=email).first()
        new_user = user is None
        if user is None:
            _check_password(password)
            user = User.objects.create_user(username=email, email=email, password=password)
        elif not user.check_password(password):
            raise ServiceError(
                f"An account for {email} exists; give its password to accept the invite.",
                "INVALID_CREDENTIALS",
                401,
            )
        membership, _ = Membership.objects.get_or_create(user=user, defaults={"role": invite.role})
        invite.accepted_at = timezone.now()
        invite.save(update_fields=["accepted_at"])
        mail = _welcome(user, tenant, membership.role, app_url)
    return SignedUp(user, tenant, membership, new_user, False, mail)


def _welcome(user: Any, tenant: Tenant, role: str, app_url: str) -> Any:
    # Queued in the tenant's mail log; it leaves once the sign-up commits.
    return better_mail.send(
        WelcomeEmail,
        to=user.email,
        from_email=MAIL_FROM,
        tags=["welcome"],
        metadata={"user": str(user.pk)},
        idempotency_key=f"welcome:{tenant.pk}:{user.pk}",
        user_email=user.email,
        tenant_name=tenant.name,
        tenant_slug=tenant.slug,
        role=role,
        app_url=app_url,
    )


def create_invite(email: str, role: str, invited_by: Any) -> tuple[Invite, str]:
    """Invite ``email`` into the tenant in scope; returns the invite and its token (send it)."""
    invite = Invite.objects.create(email=_normal_email(email), role=role, invited_by=invited_by)
    token = signing.dumps({"tenant": str(invite.tenant_id), "invite": invite.pk}, salt=INVITE_SALT)
    return invite, token


@dataclass(frozen=True)
class Issued:
    token: str
    user: Any
    tenant: Tenant
    membership: Membership


def obtain_token(email: str, password: str, tenant: str) -> Issued:
    """Check the credentials and the membership, then issue an access token for that tenant.

    ``tenant`` is a slug or an id. Wrong credentials are ``INVALID_CREDENTIALS`` (401); an unknown
    tenant and one the user is not a member of are both ``NOT_A_MEMBER`` (403), so the answer
    does not tell which tenants exist.
    """
    User = get_user_model()
    user = User.objects.filter(username=_normal_email(email), is_active=True).first()
    if user is None:
        # Hash anyway, so that the answer takes as long for an unknown email as for a known one.
        User().set_password(password)
        raise ServiceError("Wrong email or password.", "INVALID_CREDENTIALS", 401)
    if not user.check_password(password):
        raise ServiceError("Wrong email or password.", "INVALID_CREDENTIALS", 401)
    not_member = ServiceError(f"{user.email} is not a member of {tenant!r}.", "NOT_A_MEMBER", 403)
    tenant_id = resolve_to_id(tenant)
    if tenant_id is None:
        raise not_member
    with run_as(tenant_id):
        # A tenant scope reads its own row of tenants, and only that one.
        row = get_tenant()
        membership = Membership.objects.filter(user=user).first()
    if row is None or membership is None:
        raise not_member
    return Issued(issue_token(user, row, membership.role), user, row, membership)
