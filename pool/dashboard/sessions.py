"""When an operator logs out, the dashboard websockets of that log-in are closed.

A websocket outlives the page's session check: it was let in once, at connect. Django's
logout signal is the one place every way of logging out passes through.
"""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from pool.dashboard.consumers import session_group
from pool.services.events import broadcast


@receiver(user_logged_out, dispatch_uid="vibeadmin-close-sockets")
def close_sockets_on_logout(sender, request, user, **kwargs) -> None:
    key = request.session.session_key if request is not None else None
    if key:
        broadcast({"type": "session.ended"}, group=session_group(key))
