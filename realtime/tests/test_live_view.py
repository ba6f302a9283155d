"""GET /live/: the live board page as Django serves it (its behaviour in a browser is
test_live_page.py)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.contrib.staticfiles import finders
from django.templatetags.static import static
from django.test import Client
from rest_framework import status

LIVE_URL = "/live/"
EXPECTED_CSP = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' https: data:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'"
)


class PageElements(HTMLParser):
    """Every start tag of a page with its attributes, and the text inside <script>/<style>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_code: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._open = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == self._open:
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None and data.strip():
            self.inline_code.append(data)

    def with_tag(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.tags if tag == name]

    def test_ids(self) -> set[str | None]:
        return {attrs.get("data-testid") for _, attrs in self.tags if "data-testid" in attrs}


def parsed(content: bytes) -> PageElements:
    page = PageElements()
    page.feed(content.decode())
    page.close()
    return page


def test_the_page_renders_for_anyone(client: Client) -> None:
    response = client.get(LIVE_URL)

    assert response.status_code == status.HTTP_200_OK
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert [template.name for template in response.templates] == ["realtime/live.html"]


def test_the_page_carries_a_strict_content_security_policy(client: Client) -> None:
    response = client.get(LIVE_URL)

    assert response["Content-Security-Policy"] == EXPECTED_CSP
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_the_page_loads_its_script_and_stylesheet_from_static_files(client: Client) -> None:
    page = parsed(client.get(LIVE_URL).content)

    assert page.with_tag("script") == [{"src": static("realtime/live.js"), "defer": None}]
    stylesheets = [attrs["href"] for attrs in page.with_tag("link") if attrs["rel"] == "stylesheet"]
    assert stylesheets == [static("realtime/live.css")]
    assert finders.find("realtime/live.js") is not None
    assert finders.find("realtime/live.css") is not None


def test_the_page_has_no_inline_script_or_style(client: Client) -> None:
    """The CSP would block them; the page must work without."""
    page = parsed(client.get(LIVE_URL).content)

    assert page.inline_code == []
    assert page.with_tag("style") == []
    for tag, attrs in page.tags:
        assert "style" not in attrs, tag
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
        assert not str(attrs.get("href") or "").startswith("javascript:"), (tag, attrs)


def test_the_page_has_the_elements_its_script_and_tests_rely_on(client: Client) -> None:
    page = parsed(client.get(LIVE_URL).content)

    assert {
        "status",
        "sign-in",
        "sign-in-form",
        "sign-in-username",
        "sign-in-password",
        "sign-in-submit",
        "sign-in-error",
        "live",
        "signed-in-user",
        "sign-out",
        "pickers",
        "period-picker",
        "country-picker",
        "country-hint",
        "leader-banner",
        "notice",
        "board-title",
        "board",
        "board-empty",
        "updated-at",
    } <= page.test_ids()


def test_the_pickers_offer_the_periods_and_iso_countries(client: Client) -> None:
    page = parsed(client.get(LIVE_URL).content)

    options = [attrs.get("value") for attrs in page.with_tag("option")]
    assert options[:5] == ["all", "daily", "weekly", "monthly", ""]
    countries = options[5:]
    assert "US" in countries
    assert "GB" in countries
    assert all(len(code or "") == 2 and (code or "").isupper() for code in countries)
    assert len(countries) == len(set(countries)) >= 249


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_the_page_only_answers_safe_methods(client: Client, method: str) -> None:
    response = getattr(client, method)(LIVE_URL)

    assert response.status_code == status.HTTP_405_METHOD_NOT_ALLOWED


def test_head_answers_like_get_without_a_body(client: Client) -> None:
    response = client.head(LIVE_URL)

    assert response.status_code == status.HTTP_200_OK
    assert response["Content-Security-Policy"] == EXPECTED_CSP
    assert response.content == b""


def test_the_script_never_turns_data_into_html() -> None:
    """Usernames, avatars and countries reach the page as text; the script has no HTML sink
    that data could flow into."""
    path = finders.find("realtime/live.js")
    assert isinstance(path, str)
    with open(path, encoding="utf-8") as source:
        script = source.read()

    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
