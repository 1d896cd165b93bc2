from vault.keys import request_key_cache


class RequestKeyCacheMiddleware:
    """Unwrapped data keys live for one request: one unwrap per patient per request, at most."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with request_key_cache():
            return self.get_response(request)
