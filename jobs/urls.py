from django.urls import path

from jobs import pages

urlpatterns = [
    path("", pages.home, name="home"),
]
