"""Pagination for the API: ninja's limit/offset (`{"items", "count"}`), and a variant whose count
stops at a ceiling for searches over very large tables."""

from typing import Any

from django.conf import settings
from ninja import Schema
from ninja.pagination import LimitOffsetPagination

from patterm.numbers import AsciiInt, Digits

# Databases take 64-bit integers: a larger offset would fail in the driver (a 500), not a 422.
MAX_OFFSET = 2**62


class Pagination(LimitOffsetPagination):
    """`limit` 1-200 (default 50) and `offset` from 0: anything else is a 422 (API.md)."""

    class Input(Schema):
        limit: Digits = AsciiInt(
            settings.NINJA_PAGINATION_PER_PAGE, ge=1, le=settings.NINJA_PAGINATION_MAX_LIMIT
        )
        offset: Digits = AsciiInt(0, ge=0, le=MAX_OFFSET)


class CappedCountPagination(Pagination):
    """Like LimitOffsetPagination, but counts at most PATTERM_SEARCH_COUNT_LIMIT matches.

    Counting every match costs time in proportion to the matches (at a million slots, most of
    a request); nobody pages through thousands of slots. Up to the ceiling `count` is exact and
    `count_capped` false; beyond it `count` is the ceiling and `count_capped` true.
    """

    class Output(Schema):
        items: list[Any]
        count: int
        count_capped: bool

    def paginate_queryset(self, queryset, pagination, request, **params):
        ceiling = settings.PATTERM_SEARCH_COUNT_LIMIT
        offset, limit = pagination.offset, min(pagination.limit, self.max_limit)
        # Without the page's order: which ceiling + 1 matches are counted does not matter, and
        # unordered the database may count them from any index (booking's slot_free_count).
        counted = queryset.order_by()[: ceiling + 1].count()
        return {
            self.items_attribute: queryset[offset : offset + limit],
            "count": min(counted, ceiling),
            "count_capped": counted > ceiling,
        }


class RenderedPage:
    """A queryset that a paginator slices and counts, each page turned into response rows by
    `render(objects)`, so one page's work (clinic names, data keys) is done once per page."""

    def __init__(self, queryset, render):
        self.queryset = queryset
        self.render = render

    def count(self) -> int:
        return self.queryset.count()

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, page):
        return self.render(list(self.queryset[page]))
