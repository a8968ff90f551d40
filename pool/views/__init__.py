"""The operators' dashboard: one module per page, each a few thin function views."""

from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import redirect, render

from pool.models import Member


def home(request):
    return redirect("dashboard")


@staff_member_required(login_url="login")
def dashboard(request):
    return render(request, "pool/dashboard.html", {"members": Member.objects.all()})
