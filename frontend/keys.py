"""The rater screen's keyboard shortcuts, defined once.

The form's key hints and ``data-keys`` attributes (which rater.js listens to), the shortcut list, the keys line
under the guidelines and the README's paragraph (``python -m frontend.keys`` prints it) all come from here.
Keys are lower case here and shown in capitals. No Django import: the README text is printed without settings.
"""
from __future__ import annotations

import textwrap

# (payload value, label, keys)
PAIRWISE_CHOICES = (
    ("A", "A is better", ("1", "a")),
    ("B", "B is better", ("2", "b")),
    ("tie", "Tie", ("t",)),
    ("both_bad", "Both are bad", ("x",)),
)
STRENGTHS = (
    ("negligible", "Negligibly", "q"),
    ("slight", "Slightly", "w"),
    ("better", "Better", "e"),
    ("significant", "Significantly", "r"),
)
SUBMIT, SKIP, EDIT_LAST, GUIDELINES, HELP, COMMENT, NOT_RANKABLE, TIE_ABOVE = "enter", "s", "u", "g", "?", "c", "n", "t"
MOVE_UP, MOVE_DOWN = "arrowup", "arrowdown"
WRITE, USE_DRAFT, FROM_SCRATCH = "e", "d", "x"  # demonstrations: into the answer box, the model draft, a blank box
IMPROVE = "i"  # pairwise and rating projects that ask for it: rewrite the better (or the rated) response
NEW_BATTLE, SUGGEST = "n", "p"  # arena: a new battle once voted, a prompt suggested from the project's own

# The keys rater.js reads (json_script "rater-keys"); the answer keys it finds on the inputs' data-keys.
JS_KEYS = {"submit": SUBMIT, "skip": SKIP, "edit_last": EDIT_LAST, "guidelines": GUIDELINES, "help": HELP,
           "comment": COMMENT, "not_rankable": NOT_RANKABLE, "tie_above": TIE_ABOVE, "move_up": MOVE_UP,
           "move_down": MOVE_DOWN, "write": WRITE, "use_draft": USE_DRAFT, "from_scratch": FROM_SCRATCH,
           "improve": IMPROVE}

_SHOWN = {"enter": "Enter", "ctrl": "Ctrl", "arrowup": "↑", "arrowdown": "↓", "tab": "Tab", "esc": "Esc"}


def shown(key: str) -> str:
    """How a key is written for people: ``a`` -> ``A``, ``arrowup`` -> ``↑``."""
    return _SHOWN.get(key, key.upper())


def number_key(n: int) -> str:
    """The key for the n-th scale point or card: 1..9, and 0 for the tenth."""
    return str(n % 10)


def pairwise_choices(config: dict) -> list[tuple[str, str, tuple[str, ...]]]:
    allowed = {"tie": config.get("allow_tie"), "both_bad": config.get("allow_both_bad")}
    return [c for c in PAIRWISE_CHOICES if allowed.get(c[0], True)]


def strengths(config: dict) -> list[tuple[str, str, str]]:
    return list(STRENGTHS) if config.get("strength") else []


def _range(n: int) -> list[str]:
    return ["1", number_key(n)] if n > 1 else ["1"]


def shortcuts(mode: str, config: dict, *, cards: int | None = None) -> list[dict]:
    """Every shortcut of the screen, in order: ``{"keys": [...], "sep": "or" | "–" | "", "text": ...}``.

    ``cards``: how many responses this item has (ranking); a prompt may have fewer than ``k``.
    """
    rows: list[dict] = []

    def add(keys, text, sep=""):
        rows.append({"keys": [shown(k) for k in keys], "sep": sep, "text": text})

    if mode == "pairwise":
        for _, label, keys in pairwise_choices(config):
            add(keys, label, "or")
        if strengths(config):
            add([k for _, _, k in STRENGTHS], "How much better, after choosing a side: "
                + ", ".join(label.lower() for _, label, _ in STRENGTHS))
    elif mode == "rating":
        scale = int(config.get("scale") or 7)
        add(_range(scale), "Overall score" + (" (0 is 10)" if scale == 10 else ""), "–")
    if mode in ("pairwise", "rating") and config.get("improve"):
        add([IMPROVE], "Improve the " + ("better" if mode == "pairwise" else "rated")
            + " response: rewrite it as it should have been (Esc leaves the box)")
    if mode == "demonstration":
        add([WRITE], "Write in the answer box (Esc leaves it, Ctrl+Enter submits from it)")
        add([USE_DRAFT], "Start again from the model draft (when the item has one)")
        add([FROM_SCRATCH], "Clear the box and write from scratch")
    elif mode == "ranking":
        n = cards or int(config.get("k") or 4)
        add(_range(n), "Select the card with that number" + (" (0 is 10)" if n == 10 else ""), "–")
        add([MOVE_UP, MOVE_DOWN], "Move the selected card up or down")
        if config.get("allow_ties"):
            add([TIE_ABOVE], "Tie the selected card with the one above (again to untie)")
        add([NOT_RANKABLE], "None of these can be ranked")
    add(["tab"], "Move between criteria, flags and buttons; arrow keys pick within a group")
    add([COMMENT], "Write a comment (Esc leaves the box, Ctrl+Enter submits from it)")
    add([SUBMIT], "Submit and go to the next item")
    add([SKIP], "Skip this item")
    add([EDIT_LAST], "Edit my last answer (while it is still open)")
    add([GUIDELINES], "Guidelines")
    add([HELP], "This list")
    return rows


# The keys arena.js reads (json_script "arena-keys"); the vote keys are the pairwise ones, on the inputs' data-keys.
ARENA_JS_KEYS = {"vote": SUBMIT, "new_battle": NEW_BATTLE, "suggest": SUGGEST, "guidelines": GUIDELINES, "help": HELP}


def arena_shortcuts(config: dict) -> list[dict]:
    """Every shortcut of an arena battle's screen, as ``shortcuts`` gives them."""
    rows: list[dict] = []

    def add(keys, text, sep=""):
        rows.append({"keys": [shown(k) for k in keys], "sep": sep, "text": text})

    add(["ctrl", SUBMIT], "Start the battle (in the prompt box)", "+")
    add([SUGGEST], "Suggest a prompt from the project's own")
    for _, label, keys in pairwise_choices(config):
        add(keys, label, "or")
    add([SUBMIT], "Vote, once both answers are complete: the names of A and B are shown then")
    add([NEW_BATTLE], "A new battle, after the vote")
    add([GUIDELINES], "Guidelines")
    add([HELP], "This list")
    return rows


def choice_keys_line(mode: str, config: dict) -> str:
    """One line for under the guidelines: the keys that answer an item in this project."""
    if mode == "pairwise":
        parts = [f"{' or '.join(shown(k) for k in keys)} {label}" for _, label, keys in pairwise_choices(config)]
        if strengths(config):
            parts.append(f"then {' '.join(shown(k) for _, _, k in STRENGTHS)} for how much better")
    elif mode == "rating":
        scale = int(config.get("scale") or 7)
        parts = [f"{'–'.join(_range(scale))} the overall score" + (" (0 is 10)" if scale == 10 else "")]
    elif mode == "arena":
        parts = [f"{' or '.join(shown(k) for k in keys)} {label}" for _, label, keys in pairwise_choices(config)]
        return "Keys: " + " · ".join(parts + [f"{shown(SUBMIT)} vote", f"{shown(NEW_BATTLE)} new battle",
                                               f"{shown(HELP)} every shortcut"])
    elif mode == "demonstration":
        parts = [f"{shown(WRITE)} write the answer", f"{shown(USE_DRAFT)} start from the draft",
                 f"{shown(FROM_SCRATCH)} from scratch", "Ctrl+Enter submit"]
    else:
        parts = ["a card's number selects it", "↑ ↓ move it"]
        if config.get("allow_ties"):
            parts.append("T tie it with the one above")
        parts.append("N none can be ranked")
    parts += ["Enter submit", "S skip", "? every shortcut"]
    return "Keys: " + " · ".join(parts)


def readme_text() -> str:
    """The README's paragraph about the rater screen's keys."""
    def keys(*ks):
        return "/".join(f"`{shown(k)}`" for k in ks)

    pairwise = ", ".join(f"{keys(*ks)} {label if value in ('A', 'B') else label.lower()}"
                         for value, label, ks in PAIRWISE_CHOICES)
    strength = " ".join(f"`{shown(k)}`" for _, _, k in STRENGTHS)
    amounts = ", ".join(label.lower() for _, label, _ in STRENGTHS)
    return textwrap.fill(
        f"Pairwise keys: {pairwise} (tie and both bad when the project allows them), then {strength} for how much "
        f"better ({amounts}). Ranking: a card's number (`1`–`k`, `0` for the tenth), then `↑`/`↓` to move it, "
        f"`{shown(TIE_ABOVE)}` to tie it with the card above, `{shown(NOT_RANKABLE)}` \"none of these can be "
        "ranked\"; or drag cards by their handle. Rating: the number keys pick the overall score (`1`–`7` on the "
        "default scale, `0` for 10); criteria, flags and the comment are reached with `Tab`. Everywhere: "
        f"`{shown(SUBMIT)}` submits and the next item appears without a page reload, `{shown(SKIP)}` skips, "
        f"`{shown(EDIT_LAST)}` edits my last answer, `{shown(COMMENT)}` writes a comment, `{shown(GUIDELINES)}` "
        f"opens the guidelines, `{shown(HELP)}` lists every shortcut (for the item on screen). Demonstrations: "
        f"the answer box has the focus, `Ctrl`+`Enter` submits, `Esc` leaves the box, `{shown(WRITE)}` returns to "
        f"it, `{shown(USE_DRAFT)}` starts again from the model draft, `{shown(FROM_SCRATCH)}` clears it. Where a "
        f"project asks, `{shown(IMPROVE)}` opens the better (or the rated) response to rewrite.",
        width=110, break_on_hyphens=False,
    )


if __name__ == "__main__":
    print(readme_text())
