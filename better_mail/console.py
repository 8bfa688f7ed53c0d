"""Console product ``mail``: the mail log, one mail, resending, status counts and the templates.

Served at ``/.well-known/better/mail/`` by better_console, with these permissions:

- ``GET /logs`` (read): mails newest first; ``status``, ``template``, ``to`` (one exact address,
  found in the recipients), ``since`` (``24h``, ``7d`` or an ISO date/time); ``limit``, ``cursor``.
- ``GET /logs/:id`` (read): one mail, with its tracking events, metadata, its delivery attempts
  (``attemptLog``: ``at``, ``status``, ``error``, ``code``, ``backend``, oldest first) and the
  bodies when they were stored (``BETTER_MAIL['STORE_BODIES']``).
- ``POST /logs/:id/resend`` (write): queues a new mail from what the log kept, as the admin's
  resend action does; 202 with the new mail, or 409 ``RESEND_REFUSED`` saying why not.
- ``POST /logs/:id/requeue`` (write): sends a failed mail again from its stored variables, as the
  admin's requeue action does; 202 with the mail, or 409 ``REQUEUE_REFUSED`` saying why not.
- ``GET /stats`` (read): ``{"total", "byStatus": {status: n}}`` over ``since`` (default: all
  time), per ``template`` if given.
- ``GET /templates`` (read): every registered template, its subject and declared variables (a
  bare array).

Lists are paged as the published audit log is (``{"entries", "hasNextPage", "nextCursor"?}``, see
``better_console.products``).

``?tenantId=`` narrows the log endpoints to one tenant's mails (the handler runs as it, so
row-level security applies). No response holds the template variables stored for requeues; the
subject and bodies of mails of ``sensitive`` templates (sign-in codes) are hidden.

It also registers the ``mail`` section of the console dashboard (``mail_summary``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db.models import Count

from better_console.dashboard import (
    DashboardWindow,
    changelist_url,
    counts_by_status,
    register_section,
    status_rows,
)
from better_console.exceptions import ConsoleError
from better_console.products import (
    console_scope,
    fields_json,
    keyset_page,
    not_found,
    param,
    parse_choice,
    parse_moment,
    path_id,
    tenant_param,
)
from better_console.registry import ConsoleRequest, ConsoleResponse, Endpoint, register_product
from better_mail.exceptions import MailError
from better_mail.models import MailLog, MailPriority, MailStatus

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite
    from django.http import HttpRequest

FIELDS = (
    "id",
    "tenant_id",
    "template",
    "from_email",
    "to",
    "cc",
    "bcc",
    "reply_to",
    "subject",
    "status",
    "provider",
    "provider_message_id",
    "error",
    "attempts",
    "tags",
    "priority",
    "backend",
    "created_at",
    "send_at",
    "expires_at",
    "sent_at",
    "updated_at",
)
DETAIL_FIELDS = (
    *FIELDS,
    "recipient_status",
    "events",
    "metadata",
    "idempotency_key",
    "html_body",
    "text_body",
)


HIDDEN = "(hidden: this mail holds a credential)"


def _sensitive(log: MailLog) -> bool:
    """Mails of ``sensitive`` templates carry a credential (e.g. a console sign-in code)."""
    from better_mail.exceptions import TemplateNotFound
    from better_mail.templates import get_template

    try:
        return bool(log.template and get_template(log.template).sensitive)
    except TemplateNotFound:
        return False


def log_json(log: MailLog, fields: tuple[str, ...] = FIELDS) -> dict[str, Any]:
    body = fields_json(log, fields)
    if "priority" in body:
        body["priority"] = MailPriority(log.priority).label
    # Anyone who may read the log could otherwise finish a sign-in started for another address.
    if _sensitive(log):
        for key in ("subject", "htmlBody", "textBody"):
            if body.get(key):
                body[key] = HIDDEN
    return body


def _log(log_id: uuid.UUID) -> MailLog:
    log = MailLog.objects.filter(pk=log_id).first()
    if log is None:
        raise not_found("mail", log_id)
    return log


def _filtered(request: ConsoleRequest, tenant_id: uuid.UUID | None) -> Any:
    """The mail log with the request's tenant, status, template, recipient and since filters."""
    status = parse_choice(request, "status", MailStatus.values)
    template = param(request, "template")
    to = param(request, "to")
    since = parse_moment(request, "since")
    logs = MailLog.objects.all()
    if tenant_id is not None:
        logs = logs.filter(tenant_id=tenant_id)
    if status is not None:
        logs = logs.filter(status=status)
    if template is not None:
        logs = logs.filter(template=template)
    if to is not None:
        logs = logs.filter(to__contains=[to])
    if since is not None:
        logs = logs.filter(created_at__gte=since)
    return logs


def list_logs(request: ConsoleRequest) -> ConsoleResponse:
    tenant_id = tenant_param(request)
    logs = _filtered(request, tenant_id)
    with console_scope(tenant_id):
        page = keyset_page(logs, request, lambda rows: [log_json(log) for log in rows])
    return ConsoleResponse(body=page)


def get_log(request: ConsoleRequest) -> ConsoleResponse:
    log_id = path_id(request)
    with console_scope(tenant_param(request)):
        log = _log(log_id)
        attempts = [attempt.as_dict() for attempt in log.attempt_log.order_by("at")]
    return ConsoleResponse(body={**log_json(log, DETAIL_FIELDS), "attemptLog": attempts})


def requeue_log(request: ConsoleRequest) -> ConsoleResponse:
    from better_mail.requeue import RequeueRefused, requeue

    log_id = path_id(request)
    with console_scope(tenant_param(request)):
        log = _log(log_id)
        try:
            requeue(log)
        except RequeueRefused as exc:
            raise ConsoleError(
                f"The mail {log.pk} cannot be requeued: {exc}.", status=409, code="REQUEUE_REFUSED"
            ) from exc
    return ConsoleResponse(status=202, body=log_json(log))


def resend_log(request: ConsoleRequest) -> ConsoleResponse:
    from better_mail.admin import ResendRefused, resend

    log_id = path_id(request)
    with console_scope(tenant_param(request)):
        log = _log(log_id)
        try:
            copy = resend(log)
        except ResendRefused as exc:
            raise ConsoleError(
                f"The mail {log.pk} cannot be resent: {exc}.", status=409, code="RESEND_REFUSED"
            ) from exc
    return ConsoleResponse(status=202, body=log_json(copy))


def get_stats(request: ConsoleRequest) -> ConsoleResponse:
    tenant_id = tenant_param(request)
    logs = _filtered(request, tenant_id)
    with console_scope(tenant_id):
        counts = {
            row["status"]: row["n"]
            for row in logs.order_by().values("status").annotate(n=Count("id"))
        }
    by_status = {status: counts.get(status, 0) for status in MailStatus.values}
    return ConsoleResponse(body={"total": sum(by_status.values()), "byStatus": by_status})


def _default(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _template_json(template: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": template.name,
        "subject": template.subject,
        "hasText": bool(template.text or template.text_file),
        "hasPreviewData": template.preview_data is not None,
    }
    try:
        variables = template.variables()
    except MailError as exc:
        # One broken template must not hide the others; `manage.py check` reports it too.
        return {**body, "variables": [], "error": str(exc)}
    body["variables"] = [
        {
            "name": variable.name,
            "type": variable.type_name,
            "required": variable.required,
            "default": None if variable.required else _default(variable.default),
        }
        for variable in variables.values()
    ]
    return body


def list_templates(request: ConsoleRequest) -> ConsoleResponse:
    from better_mail.templates import registry

    return ConsoleResponse(body=[_template_json(t) for t in registry.all()])


ENDPOINTS = (
    Endpoint("GET", "/logs", list_logs, "read"),
    Endpoint("GET", "/logs/:id", get_log, "read"),
    Endpoint("POST", "/logs/:id/resend", resend_log, "write"),
    Endpoint("POST", "/logs/:id/requeue", requeue_log, "write"),
    Endpoint("GET", "/stats", get_stats, "read"),
    Endpoint("GET", "/templates", list_templates, "read"),
)


# --- the console dashboard's section ------------------------------------------------------------


def mail_summary(since: datetime, using: str | None = None) -> dict[str, Any]:
    """``{"statuses": {status: n}, "total"}`` over mails created since ``since``; all statuses."""
    qs = MailLog.objects.using(using) if using else MailLog.objects.all()
    statuses = dict.fromkeys(MailStatus.values, 0)
    statuses.update(counts_by_status(qs.filter(created_at__gte=since)))
    return {"statuses": statuses, "total": sum(statuses.values())}


def dashboard_figures(window: DashboardWindow) -> dict[str, Any]:
    return mail_summary(window.since, window.using)


def dashboard_context(
    site: AdminSite, request: HttpRequest, figures: Mapping[str, Any]
) -> dict[str, Any]:
    """The figures with a changelist link per status, labelled as the admin labels them."""
    logs = "better_mail.MailLog"
    return {
        **figures,
        "url": changelist_url(site, request, logs),
        "rows": status_rows(
            site, request, logs, figures["statuses"], lambda status: MailStatus(status).label
        ),
    }


def register() -> None:
    """Register (or re-register) the ``mail`` product and its dashboard section."""
    register_product("mail", "Mail", ENDPOINTS, replace=True)
    register_section(
        "mail",
        order=40,
        figures=dashboard_figures,
        template="admin/better_mail/dashboard_section.html",
        admin_context=dashboard_context,
        replace=True,
    )
