from django.http import JsonResponse

from patterm.errors import STATUS_CODES

API_PREFIX = "/api/"


class JsonApiErrorsMiddleware:
    """Unknown routes and methods under /api answer in the API's JSON error shape too.

    Django's resolver (404) and ninja's method check (405) answer in HTML or plain text; API
    clients get `{"detail", "code"}` like every other error.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            request.path.startswith(API_PREFIX)
            and response.status_code in (404, 405)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            detail = "Not found." if response.status_code == 404 else "Method not allowed."
            json_response = JsonResponse(
                {"detail": detail, "code": STATUS_CODES[response.status_code]},
                status=response.status_code,
            )
            if "Allow" in response:
                json_response["Allow"] = response["Allow"]
            return json_response
        return response
