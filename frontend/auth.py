"""Login throttling: django-axes' backend for every login that comes with a request (the log-in page, the Django
admin's, DRF's session login). A caller without a request (a management command, the test client's ``login``)
has no address to throttle on and is not counted."""
from axes.backends import AxesStandaloneBackend


class ThrottledLoginBackend(AxesStandaloneBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None  # the next backend checks the password as usual
        return super().authenticate(request, username=username, password=password, **kwargs)
