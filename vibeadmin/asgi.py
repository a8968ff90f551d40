"""The ASGI entry point.

/v1/ (and the solve page's stream) go straight to the lean gateway app, before Django's
request machinery, which costs ~2 ms of CPU per request here (docs/architecture.md). Everything
else is Django; websockets go to channels consumers behind auth and an origin check.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vibeadmin.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from pool.dashboard.routing import websocket_urlpatterns  # noqa: E402
from pool.gateway.app import CHECK_PATH, SOLVE_PATH, gateway  # noqa: E402


async def http(scope, receive, send):
    path = scope["path"]
    if path.startswith("/v1/") or path == "/v1" or path in (SOLVE_PATH, CHECK_PATH):
        return await gateway(scope, receive, send)
    return await django_asgi_app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
