"""Turn what a browser posts into annotation payloads (display positions), and the admin forms."""
from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from annotation import boundary
from annotation.errors import Invalid, ServiceError
from annotation.models import Project
from annotation.project_config import validate_project_config

from . import keys


def _int_or_raw(value: str):
    value = (value or "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return value  # the payload validator names the field and the allowed range


def payload_from_post(mode: str, config: dict, post, display_order: list[int]) -> dict:
    """The payload the rater meant, in the shape ``annotation.payloads`` validates."""
    comment = post.get("comment", "")
    if mode == "demonstration":
        return {"text": post.get("text", ""), "draft": post.get("draft") or None, "comment": comment}
    if mode == "pairwise":
        payload: dict = {"choice": post.get("choice") or None}
        strength = post.get("strength") or None
        if config.get("strength") and payload["choice"] in ("A", "B"):
            payload["strength"] = strength
        criteria = {name: post.get(f"crit_{name}") for name in config.get("criteria", [])}
        payload["criteria"] = {name: value for name, value in criteria.items() if value}
        _improved_from_post(payload, config, post, default="")
    elif mode == "rating":
        payload = {"overall": _int_or_raw(post.get("overall"))}
        if payload["overall"] is None:
            del payload["overall"]
        criteria = {name: _int_or_raw(post.get(f"crit_{name}")) for name in config.get("criteria", [])}
        payload["criteria"] = {name: value for name, value in criteria.items() if value is not None}
        payload["flags"] = post.getlist("flags")
        _improved_from_post(payload, config, post, default="A")
    else:
        payload = {"not_rankable": post.get("not_rankable") == "on", "order": []}
        if not payload["not_rankable"]:
            payload["order"] = order_from_ranks(post, display_order)
    payload["comment"] = comment
    return payload


def _improved_from_post(payload: dict, config: dict, post, *, default: str) -> None:
    """The rater's rewrite of a response ("improve this response"), when the project asks and they wrote one
    (the box's field is sent only once the rater has opened it)."""
    text = post.get("improve_text")
    if config.get("improve") and text is not None and text.strip():
        payload["improved"] = {"response": post.get("improve_response") or default, "text": text}


def order_from_ranks(post, display_order: list[int]) -> list[list[int]]:
    """``rank_<id>`` fields (1 = best, equal ranks tie) to groups of response ids, best first."""
    ranks = {}
    for rid in display_order:
        raw = (post.get(f"rank_{rid}") or "").strip()
        try:
            ranks[rid] = int(raw)
        except ValueError:
            raise Invalid("give every response a rank (1 is best; equal ranks tie)", field="payload.order")
        if not 1 <= ranks[rid] <= len(display_order):
            raise Invalid(f"ranks must be from 1 to {len(display_order)}", field="payload.order")
    groups: dict[int, list[int]] = {}
    for rid in display_order:
        groups.setdefault(ranks[rid], []).append(rid)
    return [groups[rank] for rank in sorted(groups)]


def ranks_from_order(order: list[list[int]]) -> dict[int, int]:
    """Response id to rank (1 = best; tied responses share a rank)."""
    ranks = {}
    for i, group in enumerate(order or []):
        for rid in group:
            ranks[rid] = i + 1
    return ranks


def error_lines(exc: ServiceError) -> list[str]:
    """A service error as readable lines that name the field, e.g. 'strength: must be one of ...'."""
    return [f"{exc.field.removeprefix('payload.')}: {exc.message}" if exc.field else exc.message]


class ProjectCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    mode = forms.ChoiceField(choices=Project.Mode.choices)
    guidelines = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 6}),
                                 help_text="Markdown shown to raters in the guidelines drawer.")
    config = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        help_text='JSON object of options, e.g. {"overlap": 3, "criteria": ["helpfulness"]}. Empty: the defaults.',
    )

    def clean_config(self):
        raw = (self.cleaned_data.get("config") or "").strip()
        if not raw:
            return {}
        try:
            value = boundary.loads(raw, "config")
        except boundary.JSONError as exc:
            raise ValidationError(f"not valid JSON: {exc}")
        except Invalid as exc:
            raise ValidationError(f"{exc.field or 'config'}: {exc.message}")
        if not isinstance(value, dict):
            raise ValidationError("must be a JSON object")
        return value

    def clean(self):
        data = super().clean()
        if data.get("mode") and data.get("config"):
            for field, message in config_errors(data["mode"], data["config"]):
                self.add_error("config", f"{field}: {message}" if field else message)
        return data

    def add_service_errors(self, exc: ServiceError):
        """Put a service's field error (``config.scale``, ``name``...) next to the right field."""
        field = exc.field or ""
        target = field.split(".", 1)[0] if field.split(".", 1)[0] in self.fields else None
        label = f"{field}: " if target == "config" else ""
        self.add_error(target, f"{label}{exc.message}")


class ProjectSettingsForm(forms.Form):
    guidelines = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 6}))
    status = forms.ChoiceField(choices=Project.Status.choices)


class ImportForm(forms.Form):
    file = forms.FileField(help_text=".jsonl, .csv or .parquet")
    round = forms.CharField(required=False, max_length=100, help_text="Optional name of this batch.")


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150)


def config_errors(mode: str, config: dict) -> list[tuple[str | None, str]]:
    """Every problem of a project config, each option checked on its own (the validator stops at the first)."""
    errors = []
    for key, value in config.items():
        try:
            validate_project_config(mode, {key: value})
        except ServiceError as exc:
            errors.append((exc.field, exc.message))
    return errors


def screen_fields(mode: str, config: dict, prefill: dict, responses: list[dict]) -> dict:
    """What the form shows, with the rater's earlier choices ticked (prefill is in display positions)."""
    prefill = prefill if isinstance(prefill, dict) else {}
    chosen_criteria = prefill.get("criteria") if isinstance(prefill.get("criteria"), dict) else {}
    fields: dict = {"comment": prefill.get("comment") or ""}
    improved = prefill.get("improved") if isinstance(prefill.get("improved"), dict) else {}
    fields["improve_text"] = improved.get("text") or ""
    fields["improve_response"] = improved.get("response") or ""
    if mode == "demonstration":
        draft = responses[0] if responses else None
        if "text" in prefill:  # an answer being edited, an autosave, or a refused submission
            fields["text"], fields["draft"] = prefill.get("text") or "", prefill.get("draft") or ""
        elif draft is not None and config.get("start_from_draft", True):
            fields["text"], fields["draft"] = draft["text"], "A"
        else:
            fields["text"], fields["draft"] = "", ""
        return fields
    if mode == "pairwise":
        fields["choices"] = [{"value": v, "label": label, "key": " / ".join(keys.shown(k) for k in ks),
                              "keys": " ".join(ks), "checked": prefill.get("choice") == v}
                             for v, label, ks in keys.pairwise_choices(config)]
        fields["strengths"] = [{"value": v, "label": label, "key": keys.shown(k), "keys": k,
                                "checked": prefill.get("strength") == v} for v, label, k in keys.strengths(config)]
        fields["strength_open"] = prefill.get("choice") in ("A", "B")
        fields["criteria"] = [
            {"name": name, "options": [{"value": v, "label": label, "checked": chosen_criteria.get(name) == v}
                                       for v, label in (("A", "A"), ("B", "B"), ("tie", "Same"))]}
            for name in config.get("criteria", [])
        ]
    elif mode == "rating":
        scale, labels = config.get("scale", 7), config.get("scale_labels", {})
        fields["scale"] = [{"value": i, "label": labels.get(str(i), ""), "key": keys.number_key(i),
                            "keys": keys.number_key(i), "checked": prefill.get("overall") == i}
                           for i in range(1, scale + 1)]
        fields["criteria"] = [
            {"name": name, "options": [{"value": i, "label": str(i), "checked": chosen_criteria.get(name) == i}
                                       for i in range(1, scale + 1)]}
            for name in config.get("criteria", [])
        ]
        flags = prefill.get("flags") if isinstance(prefill.get("flags"), list) else []
        fields["flags"] = [{"name": name, "label": name.replace("_", " ").capitalize(), "checked": name in flags}
                           for name in config.get("flags", [])]
    else:
        ranks = ranks_from_order(prefill.get("order") or [])
        cards = []
        for i, response in enumerate(responses):
            cards.append({**response, "rank": ranks.get(response["id"], i + 1) if ranks else i + 1})
        cards.sort(key=lambda c: c["rank"])  # stable: display order within a tie
        for i, card in enumerate(cards):
            card["tied"] = i > 0 and card["rank"] == cards[i - 1]["rank"]
        fields["cards"] = cards
        fields["not_rankable"] = bool(prefill.get("not_rankable"))
    return fields
