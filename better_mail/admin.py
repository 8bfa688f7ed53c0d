"""Django admin of the mail log and the template previews, built to stay fast at millions of rows.

- No full COUNT: the paginator counts at most ``EXACT_COUNT_LIMIT`` rows and beyond that shows the
  planner's estimate; no date hierarchy; sorting only by creation time (indexed).
- Filters on indexed columns only: status, and template (its choices come from a skip scan of the
  template index, never a DISTINCT over the table).
- Search is exact, so every form is an index lookup: a recipient address, a provider message id
  (``prefix*`` for a prefix), or a log id.
- The log is read-only. The "Resend" action queues a new mail from what a log kept: its rendered
  bodies (``BETTER_MAIL['STORE_BODIES']``) or a payload it still holds; a log without either
  cannot be resent, and the action names it and says why.
- The "Requeue" action sends a failed mail again, the same log: its template is rendered from the
  variables stored on it (never those of ``sensitive`` templates: refused, saying why), its
  attempt count starts again and its attempt log (shown inline, read-only) keeps the history.
- ``templates/`` lists every registered template rendered with its preview data, and
  ``templates/<name>/`` previews one (the same pages as ``manage.py better_mail preview``).

With better_tenant installed the log is under row-level security; superusers see every tenant's
mails (the views run in ``run_as_system()``), other staff see what their current scope allows.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from better_console.shortcuts import console_allows
from better_core.admin import (
    LargeTableAdminMixin,
    ReadOnlyAdminMixin,
    distinct_value_filter,
    pretty_json,
)
from better_mail.models import MailAttempt, MailLog, MailStatus
from better_tenant.shortcuts import TenantScopedAdminMixin


class ResendRefused(Exception):
    """A log holds nothing a new mail could be built from."""


def resend(log: MailLog) -> MailLog:
    """Queue a new mail with the content ``log`` kept; raises ``ResendRefused`` saying why not.

    The new mail goes to the same recipients from the same sender with the same subject and
    bodies, in the same tenant, and records the original's id in ``metadata["resent_from"]``.
    It is dispatched after commit like any other send.
    """
    from django.db import transaction

    from better_mail import sending

    payload = _stored_payload(log)
    copy = MailLog(
        tenant_id=log.tenant_id,
        template=log.template,
        from_email=log.from_email,
        to=list(log.to),
        cc=list(log.cc),
        bcc=list(log.bcc),
        reply_to=list(log.reply_to),
        subject=log.subject,
        status=MailStatus.QUEUED,
        tags=list(log.tags),
        metadata={**(log.metadata or {}), "resent_from": str(log.pk)},
        payload=payload,
        html_body=log.html_body,
        text_body=log.text_body,
    )
    with transaction.atomic():
        copy.save(force_insert=True)
        sending.after_commit(copy.pk, None, sending._use_celery(None))
    return copy


def _stored_payload(log: MailLog) -> dict[str, Any]:
    if log.status in (MailStatus.QUEUED, MailStatus.SENDING):
        raise ResendRefused(
            f"it is still {log.status} and will be sent; resending it now would send it twice"
        )
    if not (log.to or log.cc or log.bcc):
        raise ResendRefused("it has no recipients")
    if log.html_body or log.text_body:
        return {"html": log.html_body, "text": log.text_body, "headers": {}, "attachments": []}
    payload = log.payload if isinstance(log.payload, dict) else None
    if payload and (payload.get("html") or payload.get("text")):
        return dict(payload)
    raise ResendRefused(
        "its bodies were not stored (they are kept with BETTER_MAIL['STORE_BODIES'] = True); "
        "requeue it if it failed, or send it again from the code that sent it"
    )


class MailAttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Every delivery attempt of the mail, oldest first (read-only)."""

    model = MailAttempt
    fields = ("at", "status", "code", "error", "backend")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "Delivery attempts"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Attempts are part of the mail: whoever may see the mail sees them.
        opts = MailLog._meta
        return request.user.has_perm(f"{opts.app_label}.view_{opts.model_name}") or (
            request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")
        )


@admin.register(MailLog)
class MailLogAdmin(
    TenantScopedAdminMixin, LargeTableAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin
):
    class Media:
        # Rules of the JSON blocks and statuses the pages show (no inline style attributes).
        css = {"all": ("better_mail/admin.css",)}

    list_display = (
        "created_at",
        "template",
        "recipients_display",
        "subject",
        "status_display",
        "priority",
        "attempts",
        "sent_at",
    )
    list_display_links = ("created_at",)
    list_filter = ("status", "priority", distinct_value_filter("template"))
    search_fields = ("to", "provider_message_id")
    search_help_text = (
        "Exact recipient address, provider message id (end with * for a prefix), or mail id."
    )
    sortable_by = ("created_at",)
    ordering = ("-created_at",)
    list_max_show_all = 0
    date_hierarchy = None
    actions = ("resend_action", "requeue_action")
    inlines = (MailAttemptInline,)
    change_list_template = "admin/better_mail/maillog/change_list.html"
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "template",
                    "status_display",
                    "subject",
                    "from_email",
                    "to",
                    "cc",
                    "bcc",
                    "reply_to",
                    "tenant_id",
                )
            },
        ),
        (
            "Delivery",
            {
                "fields": (
                    "priority",
                    "backend",
                    "provider",
                    "provider_message_id",
                    "attempts",
                    "error",
                    "created_at",
                    "send_at",
                    "expires_at",
                    "sent_at",
                    "updated_at",
                    "recipient_status_json",
                    "events_json",
                )
            },
        ),
        ("Details", {"fields": ("tags", "metadata_json", "idempotency_key")}),
        ("Rendered", {"fields": ("rendered",)}),
    )

    # --- read only -------------------------------------------------------------------------------

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return self.has_resend_permission(request)

    def has_resend_permission(self, request: HttpRequest) -> bool:
        # Resending mails people: it takes the right to change logs, not only to read them,
        # and console write access.
        opts = self.opts
        may_change = request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")
        return may_change and console_allows(request.user, "write")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return flatten_fieldsets(self.fieldsets)

    # --- search ----------------------------------------------------------------------------------

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.endswith("*") and len(term) > 1:
            return queryset.filter(provider_message_id__startswith=term[:-1]), False
        if "@" in term:
            return queryset.filter(to__contains=[term]), False
        try:
            import uuid

            mail_id = uuid.UUID(term)
        except ValueError:
            return queryset.filter(provider_message_id=term), False
        return queryset.filter(pk=mail_id) | queryset.filter(provider_message_id=term), False

    # --- the resend action -----------------------------------------------------------------------

    @admin.action(description="Resend the selected mails", permissions=["resend"])
    def resend_action(self, request: HttpRequest, queryset: QuerySet) -> None:
        sent, refused = [], []
        for log in queryset:
            try:
                sent.append(resend(log))
            except ResendRefused as exc:
                refused.append((log, str(exc)))
        if sent:
            self.message_user(
                request,
                f"Queued {len(sent)} new mail{'s' if len(sent) != 1 else ''}.",
                messages.SUCCESS,
            )
        self._report_refused(request, refused, "resent")

    def _report_refused(self, request: HttpRequest, refused: list, verb: str) -> None:
        """One warning listing the mails an action left alone, each with the reason."""
        if not refused:
            return
        items = format_html_join(
            "",
            "<li>{} to {} ({}): {}</li>",
            ((log.template, ", ".join(log.to), log.pk, why) for log, why in refused),
        )
        self.message_user(
            request,
            format_html(
                "{} mail{} could not be {}:<ul>{}</ul>",
                len(refused),
                "s" if len(refused) != 1 else "",
                verb,
                items,
            ),
            messages.WARNING,
        )

    @admin.action(description="Requeue the selected failed mails", permissions=["requeue"])
    def requeue_action(self, request: HttpRequest, queryset: QuerySet) -> None:
        from better_mail.requeue import RequeueRefused, requeue

        done, refused = 0, []
        for log in queryset:
            try:
                requeue(log)
                done += 1
            except RequeueRefused as exc:
                refused.append((log, str(exc)))
        if done:
            self.message_user(
                request, f"Requeued {done} mail{'s' if done != 1 else ''}.", messages.SUCCESS
            )
        self._report_refused(request, refused, "requeued")

    # --- views in the admin's scope --------------------------------------------------------------

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        extra_context = {**(extra_context or {}), "templates_url": self._url("templates")}
        return super().changelist_view(request, extra_context)

    def get_urls(self) -> list[Any]:
        info = (self.opts.app_label, self.opts.model_name)
        custom = [
            path(
                "templates/",
                self.admin_site.admin_view(self.templates_view),
                name="{}_{}_templates".format(*info),
            ),
            path(
                "templates/<str:name>/",
                self.admin_site.admin_view(self.template_preview_view),
                name="{}_{}_template_preview".format(*info),
            ),
        ]
        return custom + super().get_urls()

    def _url(self, view: str, *args: Any) -> str:
        name = f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{view}"
        return reverse(name, args=args)

    def _page_context(self, request: HttpRequest, title: str) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "changelist_url": self._url("changelist"),
            "templates_url": self._url("templates"),
        }

    def templates_view(self, request: HttpRequest) -> HttpResponse:
        from better_mail.preview import previews

        if not self.has_view_permission(request):
            raise PermissionDenied
        context = self._page_context(request, "Mail templates")
        context["previews"] = [
            {"preview": item, "url": self._url("template_preview", item.name)}
            for item in previews()
        ]
        return TemplateResponse(request, "admin/better_mail/maillog/templates.html", context)

    def template_preview_view(self, request: HttpRequest, name: str) -> HttpResponse:
        from better_mail.exceptions import TemplateNotFound
        from better_mail.preview import preview

        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            result = preview(name)
        except TemplateNotFound as exc:
            raise Http404(str(exc)) from exc
        context = self._page_context(request, f"Preview: {name}")
        context["preview"] = result
        return TemplateResponse(request, "admin/better_mail/maillog/template_preview.html", context)

    # --- columns and detail fields ---------------------------------------------------------------

    @admin.display(description="To")
    def recipients_display(self, obj: MailLog) -> str:
        shown = ", ".join(obj.to[:3])
        return f"{shown} (+{len(obj.to) - 3})" if len(obj.to) > 3 else shown

    @admin.display(description="Status", ordering="status")
    def status_display(self, obj: MailLog) -> SafeString:
        bad = {MailStatus.FAILED, MailStatus.BOUNCED, MailStatus.COMPLAINED}
        good = {MailStatus.SENT, MailStatus.DELIVERED, MailStatus.OPENED, MailStatus.CLICKED}
        tone = "bad" if obj.status in bad else "good" if obj.status in good else "plain"
        # The tones' colours are in better_mail/admin.css (no inline style: strict CSPs refuse it).
        return format_html('<strong class="mail-{}">{}</strong>', tone, obj.get_status_display())

    @admin.display(description="Recipient status")
    def recipient_status_json(self, obj: MailLog) -> SafeString:
        return pretty_json(obj.recipient_status)

    @admin.display(description="Events")
    def events_json(self, obj: MailLog) -> SafeString:
        return pretty_json(obj.events)

    @admin.display(description="Metadata")
    def metadata_json(self, obj: MailLog) -> SafeString:
        return pretty_json(obj.metadata)

    @admin.display(description="Message")
    def rendered(self, obj: MailLog) -> SafeString:
        if not (obj.html_body or obj.text_body):
            return format_html(
                "{}",
                "The bodies were not stored (set BETTER_MAIL['STORE_BODIES'] = True to keep "
                "them). Preview the template instead.",
            ) + format_html(' <a href="{}">Preview {}</a>', self._preview_link(obj), obj.template)
        from better_mail.preview import Preview

        stored = Preview(
            name=obj.template, subject=obj.subject, html=obj.html_body, text=obj.text_body
        )
        return render_to_string("better_mail/preview/_log.html", {"preview": stored})

    def _preview_link(self, obj: MailLog) -> str:
        return self._url("template_preview", obj.template)
