from django.urls import path

from accounts.api import views

urlpatterns = [
    path("auth/register", views.RegisterView.as_view(), name="auth-register"),
    path("auth/token", views.TokenObtainView.as_view(), name="auth-token"),
    path("auth/token/refresh", views.TokenRefreshView.as_view(), name="auth-token-refresh"),
    path("users/me", views.MeView.as_view(), name="users-me"),
    path("users/me/export", views.UserExportView.as_view(), name="users-me-export"),
    path(
        "users/me/signing-key/rotate",
        views.SigningKeyRotateView.as_view(),
        name="users-me-signing-key-rotate",
    ),
]
