"""The last resort for an error no view answered (``handler500``): a database that is away is a 503 to try again,
in JSON under /api/ and as a plain page elsewhere (no template: rendering one could need the database); anything
else is Django's own 500 page."""
import sys

from django.http import HttpResponse, JsonResponse
from django.views import defaults

from annotation.api.errors import DATABASE_AWAY_BODY
from annotation.errors import DATABASE_AWAY, RETRY_AFTER_S

DATABASE_AWAY_PAGE = """<!doctype html>
<html lang="en"><meta charset="utf-8"><title>Back in a moment · Preference Studio</title>
<h1>Back in a moment</h1><p>The database is not answering (a restart?). Reload this page in a few seconds.</p>
</html>
"""


def server_error(request):
    if isinstance(sys.exc_info()[1], DATABASE_AWAY):  # we are called while Django handles the exception
        if request.path.startswith("/api/"):
            response = JsonResponse(DATABASE_AWAY_BODY, status=503)
        else:
            response = HttpResponse(DATABASE_AWAY_PAGE, status=503, content_type="text/html; charset=utf-8")
            response["Content-Security-Policy"] = "default-src 'none'"
        response["Retry-After"] = str(RETRY_AFTER_S)
        return response
    return defaults.server_error(request)
