"""Queued-to-sent mail throughput: better_mail against django-post-office, locmem backend.

Both libraries queue ``--mails`` mails of one template (a sign-in mail: three variables, a
button, a footer) and then send the queue through Django's locmem ``EMAIL_BACKEND``, in one
process, on one database (``bench_mail``, migrated as the owner role, used as the application
role) over one persistent connection, ``DEBUG = False``.

* better_mail: ``send()`` per mail, each inside ``run_as(tenant)`` (its own transaction, the
  tenant's row-level security on ``mail_logs``); ``send()`` validates the variables and renders
  MJML + Jinja2 + inlining + text, inserts the log and publishes the Celery task after commit
  (to an in-memory broker here, so no worker takes it). Then ``send_due()`` (the polling
  runner) claims each mail with ``FOR UPDATE SKIP LOCKED``, sends it, records the outcome.
* django-post-office: ``mail.send(template=EmailTemplate, context=...)`` per mail (its default
  priority queues; the template is rendered at queue time with Django templates and stored),
  then ``send_queued()`` batch after batch (its sender, default settings: a thread pool, a
  log row per mail). Its
  EmailTemplate holds the HTML that MJML produces for the same template, so it renders no MJML.

With ``--async-commit`` the connection runs with ``synchronous_commit=off`` (both libraries), so
that the figures show the libraries' own work and not the disk's flush latency per commit.

Figures: mails per second queued, sent, and end to end (mails / (queue time + send time)), the
best of ``--rounds``; then queueing again with ``BATCH`` mails per transaction (better_mail:
``send()`` in one ``run_as`` block; post-office: ``send_many()``), where the commit is shared.
Then the bulk variant: ``BULK`` (1,000) mails queued by one ``send_many()`` call of each library
(better_mail's inside ``run_as(tenant)``) and sent, timed from the call to the last mail sent.
The last line gives better_mail's figures over post-office's. Usage:
``python benchmarks/mail_throughput.py [--mails 2000] [--rounds 3]``. django-post-office is not a
dependency of the project: ``pip install -r benchmarks/requirements.txt`` installs it.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

if importlib.util.find_spec("post_office") is None:
    raise SystemExit(
        "mail_throughput compares better_mail with django-post-office, which is not installed. "
        f"Run: {Path(sys.executable).name} -m pip install -r benchmarks/requirements.txt"
    )

import django  # noqa: E402
from django.conf import settings  # noqa: E402
from psycopg.conninfo import conninfo_to_dict  # noqa: E402

from benchmarks._common import bench_database  # noqa: E402

DATABASE = "bench_mail"
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
BATCH = 100
BULK = 1_000  # mails queued by one send_many() call in the bulk variant


def _django_database(conninfo: str) -> dict[str, Any]:
    parts = conninfo_to_dict(conninfo)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.get("dbname", DATABASE),
        "USER": parts.get("user", ""),
        "PASSWORD": parts.get("password", ""),
        "HOST": parts.get("host", ""),
        "PORT": parts.get("port", ""),
    }


# Read before Django is set up: the connection's options depend on it.
ASYNC_COMMIT = "--async-commit" in sys.argv
_bench = bench_database(DATABASE)
_owner = _django_database(_bench.owner_conninfo)
settings.configure(
    DATABASES={
        "default": {
            **_django_database(_bench.app_conninfo),
            "CONN_MAX_AGE": None,
            # --async-commit: COMMIT does not wait for the WAL flush, for both libraries, so the
            # figures show the libraries' own work rather than the disk's flush latency.
            "OPTIONS": {"options": "-c synchronous_commit=off"} if ASYNC_COMMIT else {},
            "TEST": {"OWNER": {"USER": _owner["USER"], "PASSWORD": _owner["PASSWORD"]}},
        }
    },
    SECRET_KEY="benchmark-only-not-secret",
    DEBUG=False,
    USE_TZ=True,
    TIME_ZONE="UTC",
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "better_tenant",
        "better_mail",
        "post_office",
    ],
    MIDDLEWARE=[],
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}],
    EMAIL_BACKEND=LOCMEM,
    DEFAULT_FROM_EMAIL="Acme <no-reply@acme.example>",
    BETTER_MAIL={"AUTODISCOVER": False, "ASYNC": True},
    POST_OFFICE={"BACKENDS": {"default": LOCMEM}},
    CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
)
django.setup()

from celery import Celery  # noqa: E402
from django.core import mail as django_mail  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import InternalError, connection  # noqa: E402
from post_office import mail as post_office_mail  # noqa: E402
from post_office.models import Email, EmailTemplate  # noqa: E402
from post_office.models import Log as PostOfficeLog  # noqa: E402

from better_core.roles import grant_privileges_sql  # noqa: E402
from better_mail.compiler import compile_mjml  # noqa: E402
from better_mail.delivery import send_due  # noqa: E402
from better_mail.models import MailLog  # noqa: E402
from better_mail.sending import send, send_many  # noqa: E402
from better_mail.templates import MailTemplate  # noqa: E402
from better_tenant import run_as  # noqa: E402
from better_tenant.api import create_tenant, get_tenant_by_slug  # noqa: E402
from better_tenant.conf import tenant_settings  # noqa: E402
from better_tenant.models import Tenant  # noqa: E402
from better_tenant.testing import connected_as_owner  # noqa: E402

# The send task is published to an in-memory broker: the cost of publishing is counted, and the
# mails stay queued for send_due(), as with a worker that is busy elsewhere.
CELERY = Celery("bench_mail", broker="memory://", set_as_current=True)
CELERY.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=False)

MJML = """
<mjml>
  <mj-head>
    <mj-attributes><mj-all font-family="Helvetica, Arial, sans-serif" /></mj-attributes>
    <mj-style inline="inline">.muted { color: #6b7785; font-size: 13px; }</mj-style>
  </mj-head>
  <mj-body background-color="#f3f5f7">
    <mj-section background-color="#ffffff" padding="24px">
      <mj-column>
        <mj-text font-size="20px" font-weight="bold">Sign in to Acme</mj-text>
        <mj-text>Hello {{ user_name }}, use the button below to sign in. The link works once
          and expires in {{ expires_minutes }} minutes.</mj-text>
        <mj-button href="{{ link }}" background-color="#2f6fab">Sign in</mj-button>
        <mj-text css-class="muted">If you did not ask to sign in, ignore this mail.</mj-text>
      </mj-column>
    </mj-section>
  </mj-body>
</mjml>
"""
SUBJECT = "Your sign-in link, {{ user_name }}"
TEXT = """Hello {{ user_name }},

Sign in to Acme: {{ link }}
The link works once and expires in {{ expires_minutes }} minutes.

If you did not ask to sign in, ignore this mail.
"""


class SignIn(MailTemplate):
    name = "bench_sign_in"
    subject = SUBJECT
    mjml = MJML
    text = TEXT
    user_name: str
    link: str
    expires_minutes: int = 15


def context(n: int) -> dict[str, Any]:
    return {"user_name": f"User {n}", "link": f"https://acme.example/login/{n:08d}"}


def prepare_database() -> Tenant:
    """Migrate as the owner, grant the app role its DML, empty the tables, find the tenant."""
    app = settings.DATABASES["default"]["USER"]
    owner = settings.DATABASES["default"]["TEST"]["OWNER"]["USER"]
    with connected_as_owner():
        call_command("migrate", verbosity=0)
        for attempt in range(5):
            try:
                with connection.cursor() as cursor:
                    cursor.execute(grant_privileges_sql(owner, app, tenant_settings.SYSTEM_ROLE))
                break
            except InternalError:
                # "tuple concurrently updated": another database of this server grants to the
                # same roles at the same moment; the grant is simply retried.
                if attempt == 4:
                    raise
                time.sleep(0.5)
    tenant = get_tenant_by_slug("bench")  # in system mode: no scope sees other tenants
    return tenant or create_tenant("Bench", "bench")


def empty_tables() -> None:
    with connected_as_owner(), connection.cursor() as cursor:
        cursor.execute(
            f"TRUNCATE {MailLog._meta.db_table}, {Email._meta.db_table}, "
            f"{PostOfficeLog._meta.db_table} CASCADE"
        )
    django_mail.outbox = []


def post_office_template() -> EmailTemplate:
    """The same sign-in mail for post-office: MJML compiled once, Django template variables."""
    # {{ name }} is Django template syntax too; MJML keeps it as text and in the href.
    html = compile_mjml(MJML)
    template, _ = EmailTemplate.objects.update_or_create(
        name="bench_sign_in",
        language="",
        default_template=None,
        defaults={"subject": SUBJECT, "content": TEXT, "html_content": html},
    )
    return template


def drain_better_mail(mails: int) -> int:
    """``send_due()`` until ``mails`` are sent or nothing more is due; how many were sent."""
    sent = 0
    while sent < mails:
        done = send_due(limit=mails)
        if not done:
            break
        sent += done
    return sent


def drain_post_office() -> None:
    """Its runner (send_queued_mail_until_done): batch after batch until the queue is empty,
    here without the file lock and without reconnecting between batches."""
    while True:
        post_office_mail.send_queued(processes=1)
        if not post_office_mail.get_queued().exists():
            break


def run_better_mail(mails: int, tenant: Tenant) -> tuple[float, float]:
    start = time.perf_counter()
    for n in range(mails):
        with run_as(tenant):
            send(SignIn, to=f"user{n}@example.com", context=context(n))
    queued = time.perf_counter() - start
    start = time.perf_counter()
    sent = drain_better_mail(mails)
    sending = time.perf_counter() - start
    if sent != mails or len(django_mail.outbox) != mails:
        from django.db.models import Count

        from better_tenant.shortcuts import system_scope

        with system_scope():
            by_status = dict(
                MailLog.objects.values_list("status").annotate(n=Count("id")).order_by()
            )
            errors = set(MailLog.objects.exclude(error="").values_list("error", flat=True)[:3])
        raise SystemExit(
            f"better_mail sent {sent} of {mails} mails (outbox {len(django_mail.outbox)}, "
            f"statuses {by_status}, errors {errors or 'none'})"
        )
    return queued, sending


def run_post_office(mails: int, template: EmailTemplate) -> tuple[float, float]:
    start = time.perf_counter()
    for n in range(mails):
        post_office_mail.send(
            f"user{n}@example.com",
            settings.DEFAULT_FROM_EMAIL,
            template=template,
            context={**context(n), "expires_minutes": 15},
        )
    queued = time.perf_counter() - start
    start = time.perf_counter()
    drain_post_office()
    sending = time.perf_counter() - start
    if len(django_mail.outbox) != mails:
        raise SystemExit(f"post-office sent {len(django_mail.outbox)} of {mails} mails")
    return queued, sending


def post_office_mails(numbers: range, template: EmailTemplate) -> list[dict[str, Any]]:
    """The keyword arguments of post-office's ``send_many()`` for these mails."""
    return [
        {
            "recipients": [f"user{n}@example.com"],
            "sender": settings.DEFAULT_FROM_EMAIL,
            "template": template,
            "context": {**context(n), "expires_minutes": 15},
        }
        for n in numbers
    ]


def queue_in_batches(name: str, mails: int, tenant: Tenant, template: EmailTemplate) -> float:
    """Seconds to queue ``mails`` mails, ``BATCH`` per transaction (a job mailing many people)."""
    start = time.perf_counter()
    for first in range(0, mails, BATCH):
        numbers = range(first, min(first + BATCH, mails))
        if name == "better_mail":
            with run_as(tenant):
                for n in numbers:
                    send(SignIn, to=f"user{n}@example.com", context=context(n))
        else:
            post_office_mail.send_many(post_office_mails(numbers, template))
    return time.perf_counter() - start


def run_bulk(name: str, tenant: Tenant, template: EmailTemplate) -> float:
    """Seconds from queueing ``BULK`` mails in one call to the last one sent: better_mail's
    ``send_many()`` then ``send_due()``, post-office's ``send_many()`` then ``send_queued()``."""
    start = time.perf_counter()
    if name == "better_mail":
        with run_as(tenant):
            send_many(
                SignIn,
                [{"to": f"user{n}@example.com", "context": context(n)} for n in range(BULK)],
            )
        drain_better_mail(BULK)
    else:
        post_office_mail.send_many(post_office_mails(range(BULK), template))
        drain_post_office()
    elapsed = time.perf_counter() - start
    if len(django_mail.outbox) != BULK:
        raise SystemExit(f"{name} sent {len(django_mail.outbox)} of {BULK} bulk mails")
    return elapsed


def rates(mails: int, queued: float, sending: float) -> dict[str, float]:
    return {
        "queued": mails / queued,
        "sent": mails / sending,
        "end_to_end": mails / (queued + sending),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mails", type=int, default=2000, help="mails per run (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per library; best counts")
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="synchronous_commit=off on the benchmark connection (both libraries)",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("post_office").setLevel(logging.ERROR)

    tenant = prepare_database()
    template = post_office_template()
    best: dict[str, dict[str, float]] = {}
    for round_ in range(args.rounds + 1):  # round 0 warms up code paths and plans
        for name in ("better_mail", "django-post-office"):
            empty_tables()
            if name == "better_mail":
                queued, sending = run_better_mail(args.mails if round_ else 200, tenant)
            else:
                queued, sending = run_post_office(args.mails if round_ else 200, template)
            if not round_:
                continue
            result = rates(args.mails, queued, sending)
            empty_tables()
            result["batched"] = args.mails / queue_in_batches(name, args.mails, tenant, template)
            empty_tables()
            result["bulk"] = BULK / run_bulk(name, tenant, template)
            current = best.setdefault(name, result)
            for key, value in result.items():
                current[key] = max(current[key], value)
    empty_tables()

    commit = "synchronous_commit=off" if ASYNC_COMMIT else "synchronous_commit=on"
    print(f"{args.mails:,} mails per run, best of {args.rounds}, locmem backend, {commit}")
    for name, result in best.items():
        print(
            f"  {name:<20} queued {result['queued']:>8,.0f}/s   sent {result['sent']:>8,.0f}/s"
            f"   end to end {result['end_to_end']:>8,.0f}/s   queued {BATCH} per transaction "
            f"{result['batched']:>8,.0f}/s   bulk {BULK:,} end to end {result['bulk']:>8,.0f}/s"
        )
    ours, theirs = best["better_mail"], best["django-post-office"]
    ratios = {key: ours[key] / theirs[key] for key in ours}
    print(
        f"mail_throughput: better_mail vs django-post-office: queued {ours['queued']:,.0f}/s vs "
        f"{theirs['queued']:,.0f}/s ({ratios['queued']:.1f}x), sent {ours['sent']:,.0f}/s vs "
        f"{theirs['sent']:,.0f}/s ({ratios['sent']:.1f}x), end to end "
        f"{ours['end_to_end']:,.0f}/s vs {theirs['end_to_end']:,.0f}/s "
        f"({ratios['end_to_end']:.1f}x; goal 3x); queued {BATCH} per transaction "
        f"{ours['batched']:,.0f}/s vs {theirs['batched']:,.0f}/s ({ratios['batched']:.1f}x); "
        f"bulk {BULK:,} end to end {ours['bulk']:,.0f}/s vs {theirs['bulk']:,.0f}/s: "
        f"bulk {ratios['bulk']:.1f}x post-office (goal 3x)"
    )


if __name__ == "__main__":
    main()
