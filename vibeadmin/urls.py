from django.contrib import admin
from django.urls import include, path

from pool.views.metrics import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="prometheus-django-metrics"),
    path("", include("pool.urls")),
]
