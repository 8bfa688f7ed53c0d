"""Cursor pagination of the API's lists: stable pages on a growing table, no COUNT."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from better_webhooks.api.errors import ApiError

MAX_PAGE_SIZE = 200


class NewestFirstCursorPagination(CursorPagination):
    """Newest first; ``?limit=`` (1-200, default 50) and an opaque ``?cursor=``.

    The response is ``{"data": [...], "next": url | null, "previous": url | null}``.
    """

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = MAX_PAGE_SIZE

    def decode_cursor(self, request: Request) -> Any:
        try:
            return super().decode_cursor(request)
        except NotFound as exc:
            raise ApiError(
                "The cursor is not one this API returned. Follow a `next` or `previous` link "
                "as given, or start again without ?cursor=.",
                "INVALID_CURSOR",
            ) from exc

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {"data": data, "next": self.get_next_link(), "previous": self.get_previous_link()}
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        link = {"type": "string", "format": "uri", "nullable": True}
        return {
            "type": "object",
            "required": ["data", "next", "previous"],
            "properties": {"data": schema, "next": link, "previous": link},
        }
