import json

from django import template

from frontend.markdown import render_markdown

register = template.Library()


@register.filter
def markdown(text):
    """Untrusted Markdown to HTML with raw HTML escaped (see frontend.markdown)."""
    return render_markdown(text)


@register.filter
def seconds(ms):
    """A duration in milliseconds as seconds with one decimal ("19.1 s"): the one unit for time per item."""
    if ms is None or ms == "":
        return "—"
    return f"{float(ms) / 1000:.1f} s"


@register.filter
def p_value(p):
    """A p-value as people read it: "p < 0.001" below one in a thousand, else three decimals under 0.1, two above."""
    if p is None or p == "":
        return ""
    p = float(p)
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


@register.filter
def as_json(value):
    """A config or any JSON value as indented JSON (true/false/null), not a Python repr."""
    return json.dumps(value, indent=2, ensure_ascii=False)


@register.filter
def minutes(delta):
    """A timedelta in whole minutes (at least 1)."""
    try:
        return max(1, round(delta.total_seconds() / 60))
    except AttributeError:
        return delta
