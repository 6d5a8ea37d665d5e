"""Markdown for untrusted text (model output, prompts, guidelines): raw HTML off, safe links only.

markdown-it-py escapes any HTML in the source and refuses ``javascript:``, ``vbscript:``, ``file:``
and most ``data:`` links (its ``validateLink``); links that remain open without the referrer.
"""
from __future__ import annotations

from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

# breaks: a single line break stays a line break (a worked answer written as lines reads as lines).
_md = MarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": False, "typographer": False})
_md.enable(["table", "strikethrough"])


def _link_open(self, tokens, idx, options, env):
    tokens[idx].attrSet("rel", "nofollow noopener noreferrer")
    tokens[idx].attrSet("target", "_blank")
    return self.renderToken(tokens, idx, options, env)


_md.add_render_rule("link_open", _link_open)


def render_markdown(text) -> SafeString:
    if text is None:
        text = ""
    if not isinstance(text, str):
        text = str(text)
    return mark_safe(_md.render(text))  # noqa: S308 - markdown-it escapes all HTML (html=False)
