"""``manage.py demo_data``: load the demo tenants, users, projects and endpoints; print what to try.

Idempotent: a second run creates nothing and changes nothing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from better_core.commands import SYMBOLS
from example_project.projects import demo


class Command(BaseCommand):
    help = (
        "Load the demo data: tenants Acme and Globex, their owners, projects, tasks and webhook "
        "endpoints."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url",
            default=demo.RECEIVER_URL,
            help="base URL of the server the demo runs on; its /hooks/<tenant> receives the "
            f"demo's webhooks (default {demo.RECEIVER_URL})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        url = options["url"].rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
            raise CommandError(
                f"--url: {options['url']!r} is not a server's base URL such as "
                "http://127.0.0.1:8000."
            )
        result = demo.seed(url, superuser=settings.DEBUG)
        ok, info = self.style.SUCCESS(SYMBOLS["ok"]), SYMBOLS["info"]
        write = self.stdout.write
        write("Demo data (run it again at any time: nothing is duplicated)")
        for name, slug, email, _projects in demo.TENANTS:
            write(
                f"{ok} {name} ({slug}): owner {email}, {result.projects[slug]} projects, "
                f"{result.tasks[slug]} tasks, webhooks to {demo.hook_url(url, slug)}"
            )
        if result.admin is not None:
            write(f"{ok} superuser {demo.ADMIN_USERNAME} / {demo.ADMIN_PASSWORD} (DEBUG only)")
        else:
            write(f"{info} no superuser: DEBUG is off (manage.py createsuperuser makes one)")
        if result.created:
            write(f"{info} created now: {', '.join(result.created)}")
        else:
            write(f"{info} nothing new: everything was there already")
        owners = " and ".join(email for _name, _slug, email, _projects in demo.TENANTS)
        write(f"Password of {owners}: {demo.DEMO_PASSWORD}")
        write("")
        write("Open, with `manage.py runserver` running:")
        admin = " (admin / admin)" if result.admin is not None else ""
        write(f"  the admin at {url}/admin/{admin}")
        write(f"  the console dashboard at {url}/admin/better_console/dashboard/")
        write("  the mail preview: manage.py better_mail preview, then http://127.0.0.1:8025/")
        write(f"  the guided tour: manage.py demo_tour (add --url {url} to go through the server)")
        write("")
        write("Try the API:")
        write(
            f"  TOKEN=$(curl -s -X POST {url}/api/auth/token -H 'Content-Type: application/json' "
            f'-d \'{{"email": "alice@acme.test", "password": "{demo.DEMO_PASSWORD}", '
            '"tenant": "acme"}\' | python3 -c \'import json, sys; '
            'print(json.load(sys.stdin)["access"])\')'
        )
        write(f'  curl -s -H "Authorization: Bearer $TOKEN" {url}/api/projects')
        write(
            f'  curl -s -X POST -H "Authorization: Bearer $TOKEN" '
            "-H 'Content-Type: application/json' -d '{\"name\": \"Jet pack\"}' "
            f"{url}/api/projects"
        )
        write(
            f"  curl -s -H \"Authorization: Bearer $TOKEN\" -H 'X-Tenant-ID: globex' "
            f"{url}/api/projects   # 403 TENANT_MISMATCH"
        )
        write("The console protocol (auto-approve while DEBUG is on):")
        write(f"  curl -s {url}/.well-known/better/console/capabilities")
        write(
            f"  CONSOLE=$(curl -s -X POST {url}/.well-known/better/console/session/init "
            "-H 'Content-Type: application/json' -d '{\"email\": \"admin@localhost\"}' "
            "| python3 -c 'import json, sys; print(json.load(sys.stdin)[\"sessionToken\"])')"
        )
        write(
            f'  curl -s -H "Authorization: Bearer $CONSOLE" {url}/.well-known/better/tenant/tenants'
        )
        write(
            "Webhooks and mails leave through Celery (celery -A example_project worker), or run "
            "manage.py better_webhooks worker and manage.py better_mail send-due."
        )
