from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from scoreboard import health, metrics

urlpatterns = [
    path("api/v1/", include("accounts.api.urls")),
    path("api/v1/", include("scoring.api.urls")),
    path("api/v1/", include("leaderboard.api.urls")),
    path("api/v1/", include("realtime.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Outside /api/: no envelope, no rate limits; a plain view, so not in the OpenAPI schema.
    path("metrics", metrics.metrics_view, name="metrics"),
    path("", include("realtime.urls")),
    path("admin/", admin.site.urls),
]
