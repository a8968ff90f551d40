from django.contrib.auth import views as auth_views
from django.urls import path

from pool.dashboard.login_throttle import ThrottledLoginForm
from pool.dashboard.views import alerts, autoscaling, cache, keys, members, overview, routing
from pool.views import solve

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(authentication_form=ThrottledLoginForm), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", overview.home, name="home"),
    path("dashboard/", overview.overview, name="dashboard"),
    path("dashboard/capacity/", overview.capacity, name="capacity"),
    path("dashboard/events/", overview.recent_events, name="recent_events"),
    path("dashboard/members/", members.members, name="members"),
    path("dashboard/members/table/", members.members_table, name="members_table"),
    path("dashboard/members/add/", members.member_add, name="member_add"),
    path("dashboard/members/scale/", members.pool_scale, name="pool_scale"),
    path("dashboard/member/<slug:name>/", members.member_detail, name="member"),
    path("dashboard/member/<slug:name>/log/", members.member_log, name="member_log"),
    path("dashboard/member/<slug:name>/<slug:action>/", members.member_action, name="member_action"),
    path("dashboard/routing/", routing.routing, name="routing"),
    path("dashboard/keys/", keys.keys, name="keys"),
    path("dashboard/keys/create/", keys.key_create, name="key_create"),
    path("dashboard/keys/<int:pk>/revoke/", keys.key_revoke, name="key_revoke"),
    path("dashboard/keys/<int:pk>/limits/", keys.key_limits, name="key_limits"),
    path("dashboard/keys/<int:pk>/usage/", cache.key_usage, name="key_usage"),
    path("dashboard/keys/<int:pk>/usage.csv", cache.key_usage_csv, name="key_usage_csv"),
    path("dashboard/cache/", cache.cache, name="cache"),
    path("dashboard/cache/empty/", cache.cache_empty, name="cache_empty"),
    path("dashboard/routing/solve-cache/", cache.solve_cache_quota, name="solve_cache_quota"),
    path("dashboard/alerts/", alerts.alerts, name="alerts"),
    path("dashboard/alerts/events/", alerts.alert_events, name="alert_events"),
    path("dashboard/alerts/rules/", alerts.rule_create, name="rule_create"),
    path("dashboard/alerts/rules/<int:pk>/", alerts.rule_edit, name="rule_edit"),
    path("dashboard/alerts/rules/<int:pk>/delete/", alerts.rule_delete, name="rule_delete"),
    path("dashboard/alerts/webhook/", alerts.webhook, name="webhook"),
    path("dashboard/autoscaling/", autoscaling.autoscaling, name="autoscaling"),
    path("dashboard/autoscaling/status/", autoscaling.autoscale_status, name="autoscale_status"),
    path("solve/", solve.solve_page, name="solve"),
]
