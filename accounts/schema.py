"""drf-spectacular: document our JWT authentication as the bearer scheme simplejwt's is."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme


class ScoreboardJWTScheme(SimpleJWTScheme):
    target_class = "accounts.authentication.JWTAuthentication"
    name = "jwtAuth"
