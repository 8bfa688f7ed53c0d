"""The local webhook receiver: stands for a customer's server and keeps what it verified.

``POST /hooks/<inbox>`` checks the Standard Webhooks signature with the inbox's secret
(better_webhooks' ``webhook_receiver``: 400 for missing headers, 401 for a bad signature or a
stale timestamp, duplicates of an accepted webhook id answered without a second row) and stores
the event in ``ReceivedWebhook``.
"""

from __future__ import annotations

import json

from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from better_webhooks.verify import webhook_receiver
from example_project.projects.models import ReceivedWebhook, ReceiverInbox


@csrf_exempt
@require_POST
def receive(request: HttpRequest, inbox: str) -> HttpResponse:
    box = ReceiverInbox.objects.filter(slug=inbox).first()
    if box is None:
        return JsonResponse(
            {"error": f"The receiver has no inbox {inbox!r}.", "code": "INBOX_NOT_FOUND"},
            status=404,
        )
    return webhook_receiver(secret=box.secret)(_store)(request, box)


def _store(request: HttpRequest, box: ReceiverInbox) -> HttpResponse:
    try:
        envelope = json.loads(request.body)
    except ValueError:
        return JsonResponse({"error": "The body is not JSON.", "code": "INVALID_JSON"}, status=400)
    if not isinstance(envelope, dict) or not isinstance(envelope.get("type"), str):
        return JsonResponse(
            {"error": "The body has no event type.", "code": "INVALID_EVENT"}, status=400
        )
    try:
        with transaction.atomic():
            received = ReceivedWebhook.objects.create(
                inbox=box,
                webhook_id=request.webhook_id,
                event=envelope["type"],
                data=envelope.get("data") or {},
                signature=request.headers.get("webhook-signature")
                or request.headers.get("x-webhook-signature", ""),
            )
    except IntegrityError:
        # A retry of a webhook already stored (the sender did not see our first answer).
        received = ReceivedWebhook.objects.get(inbox=box, webhook_id=request.webhook_id)
    return JsonResponse({"received": True, "id": received.pk, "event": received.event})
