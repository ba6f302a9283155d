"""The live board page (DESIGN.md §5): plain HTML, CSS and JavaScript, no build step.

The page holds no data when served: its script signs in through the API, takes a WebSocket
ticket and renders what `/ws/leaderboard` streams.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe
from django_countries.data import COUNTRIES

# Everything the page loads comes from this origin; avatars may be any https image. No inline
# script or style is allowed, so data that slipped into the page could not run or restyle it.
LIVE_BOARD_CSP = "; ".join(
    [
        "default-src 'self'",
        "connect-src 'self' ws: wss:",
        "img-src 'self' https: data:",
        "style-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ]
)


def _country_choices() -> list[tuple[str, str]]:
    """(code, name) for the country picker, by name."""
    return sorted(((code, str(name)) for code, name in COUNTRIES.items()), key=lambda c: c[1])


@require_safe
def live_board(request: HttpRequest) -> HttpResponse:
    response = render(request, "realtime/live.html", {"countries": _country_choices()})
    response["Content-Security-Policy"] = LIVE_BOARD_CSP
    return response
