"""WebSocket routes of every app."""

from threads.routing import websocket_urlpatterns as thread_routes

websocket_urlpatterns = [*thread_routes]
