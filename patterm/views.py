from django.http import JsonResponse
from django.shortcuts import render

from patterm.middleware import API_PREFIX


def home(request):
    return render(request, "home.html")


def server_error(request):
    """A 500 that shows nothing of the request: JSON under /api, a plain page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse(
            {"detail": "Internal server error.", "code": "server_error"}, status=500
        )
    return render(request, "500.html", status=500)
