from django.contrib.auth import views as auth_views
from django.urls import path

from pool import solve, views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.home, name="home"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("solve/", solve.solve_page, name="solve"),
]
