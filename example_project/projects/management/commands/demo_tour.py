"""``manage.py demo_tour``: walk through the SaaS and check each claim against the evidence.

Runs against the database of the settings, after ``manage.py demo_data``. Requests go through the
whole middleware stack in this process (Django's test client), or over HTTP to a running server
with ``--url``. Each step prints what it did and what it saw; a claim that does not hold is a
``✗`` line and the command exits with status 1.

The webhook step delivers to the receiver the demo's endpoints point at; when nothing answers
there and it is on this machine, the tour serves the project there itself while it runs.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.test import Client
from django.utils import timezone

from better_core.commands import SYMBOLS
from better_mail.delivery import deliver as deliver_mail
from better_mail.delivery import mail_backend
from better_mail.models import MailLog
from better_tenant import run_as
from better_tenant.api import get_tenant_by_slug
from better_webhooks.delivery import deliver_ids
from better_webhooks.models import WebhookDelivery, WebhookEndpoint
from example_project.projects import demo, events
from example_project.projects.auth import read_token
from example_project.projects.models import ReceivedWebhook

TOUR_PASSWORD = "tour-password"
# How long a step waits for a delivery or a mail that a worker holds (or must retry).
SETTLE_SECONDS = 20


class ClaimFailed(Exception):
    """A claim of the tour does not hold."""


def claim(condition: bool, message: str) -> None:
    if not condition:
        raise ClaimFailed(message)


# --- how requests are made ------------------------------------------------------------------------


class InProcess:
    """Requests through Django's whole middleware stack in this process."""

    def __init__(self) -> None:
        self.client = Client(raise_request_exception=False)
        self.where = "in this process (Django's test client, the full middleware stack)"

    def __call__(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in (headers or {}).items()}
        data = json.dumps(body) if body is not None else None
        response = self.client.generic(
            method, path, data or "", content_type="application/json", **extra
        )
        return response.status_code, _json(response.content)


class OverHttp:
    """Requests over HTTP to a running server."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.where = f"over HTTP to {self.url}"

    def __call__(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())
        except OSError as exc:
            raise CommandError(f"--url: {self.url} does not answer ({exc}).") from exc


def _json(content: bytes) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:
        return {"raw": content[:200].decode(errors="replace")}


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


# --- the receiver -----------------------------------------------------------------------------


def _answers(base: str) -> bool | None:
    """True when the project answers at ``base``, False when something else does, None: nothing."""
    try:
        with urllib.request.urlopen(base + "/health", timeout=5) as response:
            return _json(response.read()) == {"status": "ok"}
    except urllib.error.HTTPError:
        return False
    except OSError:
        return None


@contextmanager
def receiver_at(url: str, report: Callable[[str], None]) -> Any:
    """Make sure the project answers at ``url``'s host and port for the duration of the block."""
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    state = _answers(base)
    if state:
        report(f"the receiver at {base} is the running server")
        yield
        return
    if state is False:
        raise ClaimFailed(f"something other than this project answers at {base}")
    if parts.hostname not in ("127.0.0.1", "localhost", "::1") or parts.scheme != "http":
        raise ClaimFailed(f"nothing answers at {base}; start the server there")
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadedWSGIServer((parts.hostname, parts.port or 80), QuietHandler)
    server.set_app(WSGIHandler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    report(f"nothing answered at {base}: the tour serves the project there while it runs")
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- the command ------------------------------------------------------------------------------


class Command(BaseCommand):
    help = (
        "A guided tour of the example SaaS that checks each claim (run manage.py demo_data first)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url",
            default=None,
            help="go through the server running at this URL (e.g. http://127.0.0.1:8000) instead "
            "of this process",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        url = options["url"]
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise CommandError(
                    f"--url: {url!r} is not a server URL such as http://127.0.0.1:8000."
                )
            if _answers(url.rstrip("/")) is not True:
                raise CommandError(f"--url: the example project does not answer at {url}.")
        self.call = OverHttp(url) if url else InProcess()
        self.stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        self.state: dict[str, Any] = {}
        for slug in ("acme", "globex"):
            tenant = get_tenant_by_slug(slug)
            if tenant is None:
                raise CommandError(f"No tenant {slug!r}: run `manage.py demo_data` first.")
            self.state[slug] = tenant
        self.stdout.write(f"Tour of the example SaaS, requests {self.call.where}")
        steps = [
            ("Alice (Acme) and Bob (Globex) sign in", self.sign_in),
            ("Acme cannot see or touch Globex", self.isolation),
            ("Every change is audited with its actor", self.audit_trail),
            ("project.created reaches the local receiver, signed and verified", self.webhook),
            ("A sign-up sends a welcome mail, logged in mail_logs", self.welcome_mail),
        ]
        failed = []
        # The refusals the tour provokes on purpose (404, 403, 401) are not worth a log line.
        request_log = logging.getLogger("django.request")
        level = request_log.level
        request_log.setLevel(logging.ERROR)
        try:
            for number, (title, step) in enumerate(steps, 1):
                self.stdout.write("")
                self.stdout.write(self.style.MIGRATE_HEADING(f"{number}. {title}"))
                try:
                    step()
                except ClaimFailed as exc:
                    failed.append(title)
                    self.line("error", f"claim failed: {exc}")
                except KeyError as exc:
                    # A step builds on what an earlier one produced (tokens, the project).
                    failed.append(title)
                    self.line("error", f"not checked: an earlier step did not provide {exc}")
        finally:
            request_log.setLevel(level)
        self.stdout.write("")
        if failed:
            raise CommandError(
                f"demo_tour: {len(failed)} of {len(steps)} steps failed: {'; '.join(failed)}"
            )
        self.stdout.write(f"demo_tour: all {len(steps)} steps hold")

    def line(self, status: str, message: str) -> None:
        styles = {"ok": self.style.SUCCESS, "error": self.style.ERROR}
        mark = SYMBOLS[status]
        self.stdout.write(f"   {styles.get(status, str)(mark)} {message}")

    def evidence(self, message: str) -> None:
        self.line("info", message)

    def holds(self, message: str) -> None:
        self.line("ok", message)

    # --- waiting for the workers ------------------------------------------------------------------

    def settle_delivery(self, delivery: WebhookDelivery, tenant: Any) -> None:
        """Deliver now unless a worker (Celery, polling) has it; wait for the outcome."""
        deadline = time.monotonic() + SETTLE_SECONDS
        told = False
        while True:
            with run_as(tenant):
                delivery.refresh_from_db()
            if delivery.status in ("delivered", "failed") or time.monotonic() > deadline:
                return
            if delivery.status == "pending" and delivery.next_attempt_at <= timezone.now():
                if not told:
                    self.evidence("no worker has sent it yet: the tour delivers it now")
                    told = True
                deliver_ids([delivery.pk], worker_id="demo_tour")
            # Otherwise a worker holds it, or its retry is not due yet.
            time.sleep(0.1)

    def settle_mail(self, log: MailLog, tenant: Any) -> None:
        """Send the mail now unless a worker has it; wait for the outcome."""
        deadline = time.monotonic() + SETTLE_SECONDS
        told = False
        while log.status in ("queued", "sending") and time.monotonic() < deadline:
            if log.status == "queued":
                if not told:
                    self.evidence("no worker has sent it yet: the tour sends it (better_mail)")
                    told = True
                deliver_mail(log.pk)
            time.sleep(0.1)
            with run_as(tenant):
                log.refresh_from_db()

    # --- steps ----------------------------------------------------------------------------------

    def token(self, email: str, password: str, tenant: str) -> tuple[int, Any]:
        return self.call(
            "POST", "/api/auth/token", {"email": email, "password": password, "tenant": tenant}
        )

    def sign_in(self) -> None:
        for email, slug in (("alice@acme.test", "acme"), ("bob@globex.test", "globex")):
            status, body = self.token(email, demo.DEMO_PASSWORD, slug)
            claim(status == 200, f"POST /api/auth/token for {email} answered {status}: {body}")
            claims = read_token(body["access"]) or {}
            claim(
                claims.get("tenant") == str(self.state[slug].pk),
                f"{email}'s token names tenant {claims.get('tenant')}, not {slug}",
            )
            self.state[f"token:{slug}"] = body["access"]
            self.state[f"user:{slug}"] = claims["sub"]
            self.holds(
                f"POST /api/auth/token → 200 for {email}: JWT with sub={claims['sub']}, "
                f"tenant={claims['tenant']} ({slug}), role={claims['role']}"
            )

    def isolation(self) -> None:
        alice, bob = self.state["token:acme"], self.state["token:globex"]
        acme, globex = str(self.state["acme"].pk), str(self.state["globex"].pk)
        lists = {}
        for slug, token, tenant_id in (("acme", alice, acme), ("globex", bob, globex)):
            status, body = self.call("GET", "/api/projects", headers=bearer(token))
            claim(status == 200, f"GET /api/projects as {slug} answered {status}: {body}")
            rows = body["data"]
            claim(bool(rows), f"{slug} has no projects: run manage.py demo_data")
            foreign = [row for row in rows if row["tenant_id"] != tenant_id]
            claim(not foreign, f"{slug}'s list holds rows of another tenant: {foreign}")
            lists[slug] = rows
            names = ", ".join(row["name"] for row in rows[:4])
            self.holds(f"GET /api/projects as {slug}: {len(rows)} projects, all its own ({names})")
        target = lists["globex"][0]
        path = f"/api/projects/{target['id']}"
        for method, suffix, body in (
            ("GET", "", None),
            ("PATCH", "", {"name": "Taken over"}),
            ("DELETE", "", None),
            ("POST", "/tasks", {"title": "Sneak in"}),
        ):
            status, answer = self.call(method, path + suffix, body, bearer(alice))
            claim(status == 404, f"{method} {path}{suffix} as alice answered {status}: {answer}")
            self.holds(f"{method} {path}{suffix} (Globex's {target['name']!r}) as alice → 404")
        status, answer = self.call(
            "GET", "/api/projects", headers=bearer(alice, **{"X-Tenant-ID": "globex"})
        )
        claim(
            status == 403 and answer.get("code") == "TENANT_MISMATCH",
            f"alice's token with X-Tenant-ID: globex answered {status}: {answer}",
        )
        self.holds("alice's Acme token sent with X-Tenant-ID: globex → 403 TENANT_MISMATCH")
        status, answer = self.token("alice@acme.test", demo.DEMO_PASSWORD, "globex")
        claim(
            status == 403 and answer.get("code") == "NOT_A_MEMBER",
            f"a Globex token for alice answered {status}: {answer}",
        )
        self.holds("POST /api/auth/token for alice in globex → 403 NOT_A_MEMBER")

    def audit_trail(self) -> None:
        alice = self.state["token:acme"]
        alice_id = self.state["user:acme"]
        name = f"Tour {self.stamp}"
        status, project = self.call("POST", "/api/projects", {"name": name}, bearer(alice))
        claim(status == 201, f"POST /api/projects answered {status}: {project}")
        self.state["project"] = project
        self.holds(f"alice: POST /api/projects {{'name': {name!r}}} → 201, id {project['id']}")
        status, task = self.call(
            "POST",
            f"/api/projects/{project['id']}/tasks",
            {"title": "Take the tour"},
            bearer(alice),
        )
        claim(status == 201, f"POST .../tasks answered {status}: {task}")
        status, done = self.call("POST", f"/api/tasks/{task['id']}/complete", None, bearer(alice))
        claim(status == 200 and done["done"], f"POST /api/tasks/{task['id']}/complete: {status}")
        self.state["task"] = done
        self.holds(
            f"alice: task {task['id']} created, then POST /api/tasks/{task['id']}/complete → 200"
        )
        for resource, record, expected in (
            ("projects", project["id"], ["INSERT"]),
            ("tasks", task["id"], ["INSERT", "UPDATE"]),
        ):
            status, trail = self.call(
                "GET", f"/api/audit?resource={resource}&record={record}", headers=bearer(alice)
            )
            claim(status == 200, f"GET /api/audit answered {status}: {trail}")
            entries = sorted(trail["data"], key=lambda entry: entry["timestamp"])
            operations = [entry["operation"] for entry in entries]
            claim(operations == expected, f"{resource} {record}: operations {operations}")
            for entry in entries:
                claim(entry["actor_id"] == alice_id, f"actor {entry['actor_id']}, not {alice_id}")
                claim("soc2" in entry["compliance"], f"compliance {entry['compliance']}")
                changed = (entry["diff"] or {}).get("changed_fields")
                self.holds(
                    f"audit_logs: {entry['operation']} {resource} {record} by actor "
                    f"{entry['actor_id']} (alice), compliance {entry['compliance']}"
                    + (f", changed {changed}" if changed else "")
                )
        status, trail = self.call(
            "GET",
            f"/api/audit?resource=projects&record={project['id']}",
            headers=bearer(self.state["token:globex"]),
        )
        claim(status == 200 and trail["data"] == [], f"Globex read Acme's trail: {trail}")
        self.holds("bob (Globex) asks the audit trail for that project → no entries")

    def webhook(self) -> None:
        project = self.state.get("project")
        claim(project is not None, "no project from the previous step")
        acme = self.state["acme"]
        with run_as(acme):
            deliveries = list(
                WebhookDelivery.objects.filter(
                    event=events.PROJECT_CREATED, payload__id=project["id"]
                )
            )
            endpoints = {e.pk: e.url for e in WebhookEndpoint.objects.all()}
        claim(bool(deliveries), "no project.created delivery was written with the project")
        # With --url, the endpoint at that server (demo_data --url made it); else the first.
        base = getattr(self.call, "url", "")
        mine = [d for d in deliveries if endpoints.get(d.endpoint_id, "").startswith(base)]
        delivery = (mine or deliveries)[0]
        url = endpoints.get(delivery.endpoint_id, "")
        self.holds(
            f"webhook_deliveries: {delivery.event} {delivery.message_id} to {url}, queued by the "
            "request that created the project"
        )
        with receiver_at(url, self.evidence):
            self.settle_delivery(delivery, acme)
        with run_as(acme):
            attempts = list(
                delivery.attempt_log.order_by("attempt").values_list("response_status", flat=True)
            )
        claim(
            delivery.status == "delivered",
            f"delivery {delivery.message_id} is {delivery.status}: {delivery.last_error}",
        )
        self.holds(
            f"delivered: status {delivery.status}, HTTP {delivery.last_status_code}"
            + f", attempts answered {attempts}"
        )
        received = ReceivedWebhook.objects.filter(webhook_id=delivery.message_id).first()
        claim(received is not None, "the receiver stored no webhook with that id")
        claim(received.data.get("id") == project["id"], f"received data {received.data}")
        self.holds(
            f"received_webhooks: {received.event} {received.webhook_id} in inbox "
            f"{received.inbox.slug}, signature {received.signature[:14]}… verified, "
            f"data.id = {received.data['id']}"
        )
        path = urlsplit(url).path
        status, answer = self.call(
            "POST",
            path,
            {"type": received.event, "data": {**received.data, "name": "Forged"}},
            {
                "webhook-id": "msg_forged",
                "webhook-timestamp": str(int(timezone.now().timestamp())),
                "webhook-signature": "v1,Zm9yZ2VkIHNpZ25hdHVyZSBmb3IgdGhlIHRvdXI=",
            },
        )
        claim(status == 401, f"a forged webhook answered {status}: {answer}")
        self.holds(f"a forged copy POSTed to {path} → 401 {answer.get('code')}")

    def welcome_mail(self) -> None:
        alice = self.state["token:acme"]
        email = f"tour-{self.stamp}@acme.test"
        status, invite = self.call("POST", "/api/invites", {"email": email}, bearer(alice))
        claim(status == 201, f"POST /api/invites answered {status}: {invite}")
        self.holds(f"alice: POST /api/invites {{'email': {email!r}}} → 201 with an invite token")
        status, signed = self.call(
            "POST",
            "/api/auth/signup",
            {"email": email, "password": TOUR_PASSWORD, "invite": invite["invite"]},
        )
        claim(status == 201, f"POST /api/auth/signup answered {status}: {signed}")
        self.holds(
            f"POST /api/auth/signup with the invite → 201: user {signed['user']['id']}, "
            f"{signed['role']} of {signed['tenant']['slug']}"
        )
        with run_as(self.state["acme"]):
            log = MailLog.objects.get(pk=signed["welcome_mail"])
        self.holds(f"mail_logs: template {log.template!r} to {', '.join(log.to)}, {log.status}")
        self.settle_mail(log, self.state["acme"])
        claim(log.status == "sent", f"the welcome mail is {log.status}: {log.error}")
        backend = mail_backend()
        where = type(backend).__module__.rsplit(".", 1)[-1]
        target = f" in {backend.file_path}" if where == "filebased" else ""
        self.holds(
            f"mail_logs: {log.subject!r} to {', '.join(log.to)} is {log.status} "
            f"(backend {where}{target})"
        )
        status, trail = self.call(
            "GET",
            f"/api/audit?resource=auth_user&record={signed['user']['id']}",
            headers=bearer(alice),
        )
        claim(status == 200 and trail["data"], f"no audit entry for the new account: {trail}")
        entry = trail["data"][-1]
        claim("password" in entry["redacted_fields"], f"redacted {entry['redacted_fields']}")
        claim("password" not in (entry["after_data"] or {}), "the password hash is in the trail")
        self.holds(
            f"audit_logs: {entry['operation']} auth_user {entry['record_id']}: "
            f"{entry['description']!r}, compliance {entry['compliance']}, "
            f"redacted {entry['redacted_fields']}"
        )
        self.evidence(
            "preview every template: manage.py better_mail preview, then "
            "http://127.0.0.1:8025/ (this one is 'welcome')"
        )
