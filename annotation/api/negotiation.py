"""Content negotiation that answers the common case (no Accept header, */* or JSON) without parsing."""
from rest_framework.negotiation import DefaultContentNegotiation

JSON_ACCEPTS = {"", "*/*", "application/json"}


class JSONFirstNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, except that a client which accepts JSON gets the first renderer (JSON) at once:
    every API call negotiates, and parsing the Accept header was a tenth of the hot path's Python."""

    def select_renderer(self, request, renderers, format_suffix=None):
        first = renderers[0]
        if (first.media_type == "application/json" and not format_suffix
                and request.META.get("HTTP_ACCEPT", "").strip() in JSON_ACCEPTS
                and self.settings.URL_FORMAT_OVERRIDE not in request.query_params):
            return first, first.media_type
        return super().select_renderer(request, renderers, format_suffix)
