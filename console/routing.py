from channels.auth import AuthMiddlewareStack
from django.urls import path

from console.consumers import ConsoleConsumer

websocket_urlpatterns = [
    # Session authentication: the staff member's admin login.
    path("ws/console/", AuthMiddlewareStack(ConsoleConsumer.as_asgi())),
]
