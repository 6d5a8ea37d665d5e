from django import template

from frontend.markdown import render_markdown

register = template.Library()


@register.filter
def markdown(text):
    """Untrusted Markdown to HTML with raw HTML escaped (see frontend.markdown)."""
    return render_markdown(text)
