from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from accounts import otp, services
from accounts.forms import LoginForm
from accounts.services import ClientInfo
from patterm.errors import DomainError
from patterm.web import safe_next_url


def redirect_with_next(request, name: str):
    """Redirect to the page `name`, passing on a local `next` if there is one."""
    next_url = safe_next_url(request, "")
    return redirect(f"{reverse(name)}?{urlencode({'next': next_url})}" if next_url else name)


def client_info(request) -> ClientInfo:
    return ClientInfo(
        address=request.META.get("REMOTE_ADDR"),
        user_agent=request.headers.get("User-Agent", ""),
    )


@sensitive_post_parameters("password")
@never_cache
@require_http_methods(["GET", "POST"])
def login(request):
    if request.user.is_authenticated:
        return redirect("start")
    form = LoginForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.session_login(request=request, **form.cleaned_data)
        except DomainError as error:
            form.add_error(None, error.message)
        else:
            if otp.second_factor_pending(request):  # staff with an authenticator app
                return redirect_with_next(request, "accounts:login_code")
            return redirect(safe_next_url(request, reverse("start")))
    return render(
        request, "accounts/login.html", {"form": form, "next": safe_next_url(request, "")}
    )


@require_POST
def logout(request):
    services.session_logout(request=request)
    return redirect("home")
