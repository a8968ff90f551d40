from django.contrib import admin
from django.urls import include, path

from pool.dashboard.login_throttle import ThrottledAdminLoginForm
from pool.views.metrics import metrics

admin.site.login_form = ThrottledAdminLoginForm

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="prometheus-django-metrics"),
    path("", include("pool.urls")),
]
