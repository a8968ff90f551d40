"""The students' solve page."""

from django.shortcuts import render


def solve_page(request):
    return render(request, "pool/solve.html", {})
