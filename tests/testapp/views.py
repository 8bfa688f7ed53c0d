"""Views that the middleware and decorator tests call; each reports what the request could see."""

from __future__ import annotations

from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse

from better_tenant import get_context, tenant_required

from .models import Note


def _session() -> dict:
    """The tenant setting and the server process of this request's database connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT better_tenant_current()::text, pg_backend_pid()")
        setting, pid = cursor.fetchone()
    return {"setting": setting, "pid": pid, "in_atomic": connection.in_atomic_block}


def _state(request: HttpRequest, titles: list[str]) -> dict:
    context = get_context()
    request_tenant_id = getattr(request, "tenant_id", None)
    return {
        "tenant_id": str(context.tenant_id) if context.tenant_id else None,
        "request_tenant_id": str(request_tenant_id) if request_tenant_id else None,
        "titles": sorted(titles),
    }


def notes(request: HttpRequest, tenantId: str | None = None) -> JsonResponse:
    """The titles of every note the request can see (RLS alone decides)."""
    data = _state(request, list(Note.objects.values_list("title", flat=True)))
    return JsonResponse({**data, **_session()})


async def notes_async(request: HttpRequest, tenantId: str | None = None) -> JsonResponse:
    """``notes`` through the async ORM."""
    titles = [title async for title in Note.objects.values_list("title", flat=True)]
    return JsonResponse(_state(request, titles))


def tenant_slug(request: HttpRequest) -> JsonResponse:
    """The lazily loaded ``request.tenant``."""
    tenant = request.tenant
    return JsonResponse({"slug": tenant.slug, "same": tenant.pk == request.tenant_id})


async def tenant_slug_async(request: HttpRequest) -> JsonResponse:
    tenant = await request.atenant()
    return JsonResponse({"slug": tenant.slug})


def create_note(request: HttpRequest) -> JsonResponse:
    note = Note.objects.create(title=request.GET.get("title", "created"))
    return JsonResponse({"id": note.pk, "tenant_id": str(note.tenant_id)}, status=201)


def create_then_fail(request: HttpRequest) -> JsonResponse:
    """Write a note, then fail: the write must not survive."""
    Note.objects.create(title=request.GET.get("title", "doomed"))
    raise RuntimeError("the view failed after writing")


@transaction.atomic
def atomic_create_then_fail(request: HttpRequest) -> JsonResponse:
    """``create_then_fail`` in a view that makes itself atomic: the write must not survive."""
    return create_then_fail(request)


async def create_then_fail_async(request: HttpRequest) -> JsonResponse:
    await Note.objects.acreate(title=request.GET.get("title", "doomed"))
    raise RuntimeError("the async view failed after writing")


def state(request: HttpRequest) -> JsonResponse:
    """What scope a request outside the middleware's paths runs in."""
    return JsonResponse(
        {
            "tenant_id": str(get_context().tenant_id) if get_context().tenant_id else None,
            "request_tenant_id": request.tenant_id,
            "visible_notes": Note.objects.count(),
            **_session(),
        }
    )


def stream_notes(request: HttpRequest) -> StreamingHttpResponse:
    """Streams titles from a queryset that is only evaluated while the body is read."""
    queryset = Note.objects.order_by("title").values_list("title", flat=True)
    return StreamingHttpResponse(f"{title}\n" for title in queryset.iterator(chunk_size=2))


async def stream_notes_async(request: HttpRequest) -> StreamingHttpResponse:
    async def body():
        async for title in Note.objects.order_by("title").values_list("title", flat=True):
            yield f"{title}\n"

    return StreamingHttpResponse(body())


@tenant_required
def decorated(request: HttpRequest) -> JsonResponse:
    return notes(request)


@tenant_required(status=401)
def decorated_401(request: HttpRequest) -> JsonResponse:
    return notes(request)


@tenant_required
async def decorated_async(request: HttpRequest) -> JsonResponse:
    return await notes_async(request)


@tenant_required
def decorated_fail(request: HttpRequest) -> JsonResponse:
    return create_then_fail(request)
