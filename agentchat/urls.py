from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

admin.site.site_header = "AgentChat administration"
admin.site.site_title = "AgentChat"
admin.site.index_title = "Threads, messages and agents"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
]
