"""WebSocket routes of every app."""

from console.routing import websocket_urlpatterns as console_routes
from threads.routing import websocket_urlpatterns as thread_routes

websocket_urlpatterns = [*thread_routes, *console_routes]
