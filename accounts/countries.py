"""ISO 3166-1 alpha-2 country codes (the data set shipped by django-countries)."""

from django.core.exceptions import ValidationError
from django_countries.data import COUNTRIES

COUNTRY_CODES = frozenset(COUNTRIES)


def validate_country_code(value: str) -> None:
    if value and value not in COUNTRY_CODES:
        raise ValidationError(f"{value!r} is not an ISO 3166-1 alpha-2 country code.")
