"""The dashboard's forms: launching a run (its key hyperparameters with the engine's defaults), and the
checkpoint actions. The engine's own validation (``training.services.run_config_validate``) stays the one
source of truth; its errors are put next to the field they name."""
from __future__ import annotations

from django import forms
from django.conf import settings

from annotation.errors import ServiceError
from annotation.models import Annotation, Project
from training.judge import API as JUDGE_API, MAX_LIMIT as JUDGE_MAX_LIMIT
from training.critique import DEFAULT_CONSTITUTION
from training.endpoints import endpoint_names
from training.engine.config import ADAPTERS, DPOSection, GRPOSection, KTOSection, PPOSection, RLOOSection, RunConfig
from training.models import BaseModel, ChatEndpoint, Checkpoint, DatasetSnapshot, TrainingRun
from training.services import SNAPSHOT_KINDS, run_config_validate

METHOD_HELP = {
    "reward": "Reward model (Bradley–Terry on chosen/rejected pairs).",
    "dpo": "Direct preference optimisation of a policy on pairs.",
    "kto": "KTO on thumbs-up / thumbs-down rows (ratings, or pairs unpaired).",
    "sft": "Supervised fine-tuning on the chosen responses.",
    "ppo": "PPO against a reward checkpoint.",
    "rloo": "RLOO against a reward checkpoint.",
    "grpo": "GRPO against a reward checkpoint (samples judged within their group).",
}
METHOD_LABELS = {"reward": "Reward model", "dpo": "DPO", "kto": "KTO", "sft": "SFT", "ppo": "PPO", "rloo": "RLOO",
                 "grpo": "GRPO"}
ADAPTER_LABELS = {"lora": "LoRA", "qlora": "QLoRA (4-bit base)", "prompt_tuning": "Prompt tuning",
                  "full": "Full fine-tune"}
POLICY_METHODS = ("dpo", "kto", "sft", "ppo", "rloo", "grpo")
_DEFAULTS = RunConfig(method="dpo", output_dir="-", dataset="-")

# form field -> engine config key (a dotted key lives in the method's section; "{method}" is filled in)
CONFIG_FIELDS = {
    "adapter": "adapter",
    "max_steps": "max_steps",
    "num_epochs": "num_epochs",
    "batch_size": "batch_size",
    "grad_accum": "grad_accum",
    "learning_rate": "learning_rate",
    "lora_r": "lora_r",
    "lora_alpha": "lora_alpha",
    "max_length": "max_length",
    "eval_fraction": "eval_fraction",
    "save_steps": "save_steps",
    "seed": "seed",
}
BETA_KEY = {"dpo": "dpo.beta", "kto": "kto.beta", "rloo": "rloo.beta", "grpo": "grpo.beta", "ppo": "ppo.kl_coef"}
BETA_DEFAULT = {"dpo": DPOSection().beta, "kto": KTOSection().beta, "rloo": RLOOSection().beta,
                "grpo": GRPOSection().beta,
                "ppo": PPOSection().kl_coef}


KIND_WORDS = {"trl": "preference pairs", "kto": "thumbs-up / thumbs-down rows", "raw": "raw annotation rows",
              "prompts": "prompts only"}


def snapshot_methods(kind: str) -> list[str]:
    """The methods that train on a snapshot of this kind (training.services.SNAPSHOT_KINDS)."""
    return [m for m in METHOD_LABELS if kind in SNAPSHOT_KINDS.get(m, ())]


def dataset_choices() -> tuple[list, dict[str, str]]:
    """'New snapshot of project X' for each project, then the frozen snapshots; and for each choice the methods it
    fits (a project fits every method; a snapshot those that train on its kind), for the form to offer only those."""
    projects = [(f"project:{p.pk}", f"New snapshot of {p.name}")
                for p in Project.objects.exclude(status=Project.Status.ARCHIVED).order_by("name")]
    rows = DatasetSnapshot.objects.select_related("project").filter(format="jsonl")[:200]
    snapshots = [(f"snapshot:{s.pk}", f"#{s.pk} {s.name or s.project.name} · {s.kind} · {s.row_count} rows")
                 for s in rows]
    fits = {value: " ".join(METHOD_LABELS) for value, _ in projects}
    fits.update({f"snapshot:{s.pk}": " ".join(snapshot_methods(s.kind)) for s in rows})
    choices = [("", "— choose —")]
    if projects:
        choices.append(("Freeze the project's annotations now", projects))
    if snapshots:
        choices.append(("Existing snapshots", snapshots))
    return choices, fits


class DatasetSelect(forms.Select):
    """A select whose options say which methods they fit (``data-methods``); dashboard.js hides the others."""

    fits: dict[str, str] = {}

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        if str(value) in self.fits:
            option["attrs"]["data-methods"] = self.fits[str(value)]
        return option


def reward_checkpoint_choices() -> list:
    rows = (Checkpoint.objects.filter(run__method=TrainingRun.Method.REWARD, run__status=TrainingRun.Status.SUCCEEDED)
            .exclude(kind=Checkpoint.Kind.MERGED).order_by("-run_id", "-step")
            .values_list("pk", "run_id", "step", "run__project__name")[:100])  # never the runs' metric series
    return [("", "— none —")] + [
        (str(pk), f"#{pk} · reward run {run_id} step {step}{' · ' + project if project else ''}")
        for pk, run_id, step, project in rows]


class RunLaunchForm(forms.Form):
    method = forms.ChoiceField(choices=list(METHOD_LABELS.items()),
                               initial="dpo",
                               help_text=" ".join(f"<b>{k}</b>: {v}" for k, v in METHOD_HELP.items()))
    base_model = forms.ChoiceField(help_text="The built-in <code>tiny</code> model runs anywhere in seconds.")
    dataset = forms.ChoiceField(label="Training data", widget=DatasetSelect,
                                help_text="Only the data the chosen method trains on is offered.")
    reward_checkpoint = forms.ChoiceField(required=False, label="Reward checkpoint",
                                          help_text="Required for PPO, RLOO and GRPO; ignored otherwise.")
    adapter = forms.ChoiceField(choices=[(a, ADAPTER_LABELS[a]) for a in ADAPTERS], initial=_DEFAULTS.adapter)
    max_steps = forms.IntegerField(initial=_DEFAULTS.max_steps, help_text="Optimizer steps; −1 runs the epochs below.")
    num_epochs = forms.FloatField(initial=_DEFAULTS.num_epochs)
    batch_size = forms.IntegerField(initial=_DEFAULTS.batch_size)
    grad_accum = forms.IntegerField(initial=_DEFAULTS.grad_accum, label="Gradient accumulation")
    learning_rate = forms.FloatField(required=False, help_text="Empty: the method's default for the adapter.")
    beta = forms.FloatField(required=False, label="β (KL strength)",
                            help_text="DPO / KTO β, RLOO / GRPO β, PPO KL coefficient. Empty: the method's default "
                                      f"({', '.join(f'{m} {v}' for m, v in BETA_DEFAULT.items())}).")
    lora_r = forms.IntegerField(initial=_DEFAULTS.lora_r, label="LoRA rank")
    lora_alpha = forms.IntegerField(initial=_DEFAULTS.lora_alpha, label="LoRA alpha")
    max_length = forms.IntegerField(initial=_DEFAULTS.max_length, help_text="Tokens per sequence.")
    eval_fraction = forms.FloatField(initial=_DEFAULTS.eval_fraction, help_text="Held out for evaluation.")
    save_steps = forms.IntegerField(initial=_DEFAULTS.save_steps, help_text="Also save every N steps (0: at the end).")
    seed = forms.IntegerField(initial=_DEFAULTS.seed)
    gpus = forms.IntegerField(initial=1, min_value=1, max_value=64, label="GPUs")
    queue = forms.CharField(initial="training", max_length=50, help_text="Worker pool.")
    # One key per rendered form (set by the view): a double submit replays the first create instead of starting a second run.
    idempotency_key = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["base_model"].choices = [(m.name, m.name) for m in BaseModel.objects.order_by("name")]
        self.fields["base_model"].initial = "tiny"
        self.fields["dataset"].choices, self.fields["dataset"].widget.fits = dataset_choices()
        self.fields["reward_checkpoint"].choices = reward_checkpoint_choices()

    def clean(self):
        data = super().clean()
        method = data.get("method")
        if method in ("ppo", "rloo", "grpo") and not data.get("reward_checkpoint"):
            self.add_error("reward_checkpoint", f"is required for {data['method']}")
        if method and data.get("dataset"):
            self._check_data(method)
        return data

    def _check_data(self, method: str) -> None:
        """Refuse, before any run exists, data the method cannot train on or a project with nothing to train on."""
        kind, pk = self.source()
        name = METHOD_LABELS[method]
        if kind == "snapshot":
            snapshot = DatasetSnapshot.objects.filter(pk=pk).only("kind").first()
            if snapshot is not None and method not in snapshot_methods(snapshot.kind):
                wants = " or ".join(KIND_WORDS.get(k, k) for k in SNAPSHOT_KINDS[method])
                self.add_error("dataset", f"snapshot #{pk} holds {KIND_WORDS.get(snapshot.kind, snapshot.kind)} "
                                          f"({snapshot.kind}); {name} trains on {wants}")
        elif kind == "project":
            project = Project.objects.filter(pk=pk).only("name").first()
            if project is not None and not Annotation.objects.filter(item__project=project).exists():
                self.add_error("dataset", f"{project.name} has no annotations yet: there is nothing to train on. "
                                          "Annotate some items first, or choose a snapshot.")

    def config(self) -> dict:
        """The run's config: only the values that differ from the engine's defaults (the rest stay implicit)."""
        data = self.cleaned_data
        config = {}
        for name, key in CONFIG_FIELDS.items():
            value = data.get(name)
            if value is None or value == getattr(_DEFAULTS, key):
                continue
            config[key] = value
        method = data["method"]
        if data.get("beta") is not None and method in BETA_KEY:
            section, key = BETA_KEY[method].split(".")
            config[section] = {key: data["beta"]}
        return config

    def is_ready(self) -> bool:
        """The form's own checks and the engine's, all of them: every problem is named in one answer."""
        valid = self.is_valid()
        if "method" in self.cleaned_data:
            valid = self.check_config() and valid
        return valid and not self.errors

    def check_config(self) -> bool:
        """Check each hyperparameter alone with the engine's rules, so every bad field is named at once."""
        method = self.cleaned_data["method"]
        for key, value in self.config().items():
            if key in self.errors:
                continue  # already refused by the form itself
            try:
                run_config_validate(method=method, config={key: value})
            except ServiceError as exc:
                self.add_service_error(exc)
        return not self.errors

    def source(self) -> tuple[str, int]:
        kind, _, pk = self.cleaned_data["dataset"].partition(":")
        return kind, int(pk)

    def add_service_error(self, exc: ServiceError) -> None:
        """Put a service error next to its field (``config.max_steps`` -> max_steps, ``config.dpo.beta`` -> beta)."""
        field = exc.field or ""
        message = exc.message
        target = None
        if field.startswith("config."):
            key = field.removeprefix("config.")
            message = message.removeprefix(f"{field}: ")
            target = next((name for name, k in CONFIG_FIELDS.items() if k == key), None)
            if target is None and key in BETA_KEY.values():
                target = "beta"
            if target is None:
                message = f"{key}: {message}"
        elif field in ("project", "snapshot"):
            target = "dataset"
        elif field in self.fields and field != "idempotency_key":  # a hidden field: its error goes on top
            target = field
        self.add_error(target, message)


class EvaluateForm(forms.Form):
    kind = forms.ChoiceField(choices=[("reward_accuracy", "Reward accuracy"), ("win_rate", "Win-rate")])
    reward_checkpoint = forms.ChoiceField(required=False, label="Judge (reward checkpoint)")
    max_prompts = forms.IntegerField(required=False, min_value=1, max_value=5000, initial=50)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reward_checkpoint"].choices = reward_checkpoint_choices()


def source_choices(*, exclude: Checkpoint | None = None, base: bool = False) -> list:
    """Where responses can come from: ("base" = the checkpoint's own base model), base models, policy checkpoints,
    chat endpoints."""
    others = Checkpoint.objects.filter(run__method__in=POLICY_METHODS).order_by("-pk")
    if exclude is not None:
        others = others.exclude(pk=exclude.pk)
    choices = [("base", "Its base model")] if base else []
    choices += [(f"model:{name}", f"Base model {name}") for name in BaseModel.objects.order_by("name")
                .values_list("name", flat=True)]
    choices += [(f"checkpoint:{pk}", f"Checkpoint #{pk} · {method} run {run_id} step {step}")
                for pk, method, run_id, step in others.values_list("pk", "run__method", "run_id", "step")[:100]]
    choices += [(f"endpoint:{name}", f"Chat endpoint {name}") for name in endpoint_names()]
    return choices


class SamplingForm(forms.Form):
    n = forms.IntegerField(initial=2, min_value=1, max_value=16, label="Responses per prompt")
    temperature = forms.FloatField(initial=0.8, min_value=0.0, max_value=5.0)
    top_p = forms.FloatField(initial=0.95, min_value=0.01, max_value=1.0, label="Top-p")
    max_new_tokens = forms.IntegerField(initial=64, min_value=1, max_value=4096, label="Max tokens")
    max_prompts = forms.IntegerField(required=False, min_value=1, initial=20, label="Prompts (at most)")

    def sampling(self) -> dict:
        return {k: self.cleaned_data[k] for k in ("n", "temperature", "top_p", "max_new_tokens", "max_prompts")}


class GenerationRoundForm(SamplingForm):
    """From a checkpoint (its page) or any source (the project's rounds page), optionally against a second source."""

    source = forms.ChoiceField(label="Sample from")
    project = forms.ModelChoiceField(queryset=Project.objects.exclude(status=Project.Status.ARCHIVED).order_by("name"),
                                     help_text="Its prompts are sampled; the new items join its queue.")
    versus = forms.ChoiceField(required=False, label="Against (pairwise)",
                               help_text="Optional second source: each item pits one response of each.")
    field_order = ["source", "project", "versus", "n", "temperature", "top_p", "max_new_tokens", "max_prompts"]

    def __init__(self, *args, checkpoint: Checkpoint | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if checkpoint is not None:  # the checkpoint's page: it is the source
            del self.fields["source"]
        else:
            self.fields["source"].choices = source_choices()
        self.fields["versus"].choices = [("", "Nothing: one source")] + source_choices(
            exclude=checkpoint, base=checkpoint is not None)


class HumanEvalForm(forms.Form):
    project = forms.ModelChoiceField(
        queryset=Project.objects.exclude(status=Project.Status.ARCHIVED).order_by("name"),
        label="Prompts and raters from",
        help_text="A new blind pairwise project is made for the pairs; this project's raters are its members.")
    baseline = forms.ChoiceField(label="Against")
    max_prompts = forms.IntegerField(initial=20, min_value=1, max_value=2000, label="Prompts")
    max_new_tokens = forms.IntegerField(initial=64, min_value=1, max_value=4096, label="Max tokens")

    def __init__(self, *args, checkpoint: Checkpoint | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["baseline"].choices = source_choices(exclude=checkpoint, base=True)


class CritiqueReviseForm(forms.Form):
    """A critique-and-revise round on a project's prompts (the project's rounds page)."""

    source = forms.ChoiceField(label="Answers, critiques and revises")
    constitution = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), initial="\n".join(DEFAULT_CONSTITUTION),
                                   help_text="One principle per line; each answer is critiqued against one, drawn at "
                                             "random.")
    target = forms.ModelChoiceField(queryset=Project.objects.filter(mode="pairwise").exclude(
        status=Project.Status.ARCHIVED).order_by("name"), required=False, label="Pairs go to",
        empty_label="A new pairwise project (this project's raters)")
    spot_check = forms.FloatField(initial=0.2, min_value=0, max_value=1, label="Share shown to raters",
                                  help_text="Pairs of answer and revision sent to raters, blind, to check.")
    seed = forms.IntegerField(initial=0, min_value=0, max_value=2**31 - 1, help_text="Draws the principles and the sample.")
    temperature = forms.FloatField(initial=0.7, min_value=0.0, max_value=5.0)
    max_new_tokens = forms.IntegerField(initial=128, min_value=1, max_value=4096, label="Max tokens")
    max_prompts = forms.IntegerField(required=False, min_value=1, initial=20, label="Prompts (at most)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["source"].choices = source_choices()


class DistilForm(forms.Form):
    """Distil a teacher into a student: its answers to a project's prompts become SFT data for the student."""

    teacher = forms.ChoiceField()
    student = forms.ChoiceField(label="Into (student base model)")
    project = forms.ModelChoiceField(queryset=Project.objects.exclude(status=Project.Status.ARCHIVED).order_by("name"),
                                     label="On the prompts of")
    max_prompts = forms.IntegerField(required=False, min_value=1, initial=50, label="Prompts (at most)")
    temperature = forms.FloatField(initial=0.7, min_value=0.0, max_value=5.0)
    max_new_tokens = forms.IntegerField(initial=128, min_value=1, max_value=4096, label="Max tokens")
    max_steps = forms.IntegerField(required=False, min_value=1, max_value=1_000_000, label="SFT steps",
                                   help_text="Empty: one epoch over the teacher's answers.")

    def __init__(self, *args, teacher: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["teacher"].choices = [c for c in source_choices() if c[0] != "base"]
        if teacher is not None:  # a checkpoint's or an endpoint's own form: it is the teacher
            self.fields["teacher"].widget = forms.HiddenInput()
            self.initial["teacher"] = teacher
        self.fields["student"].choices = [(name, name) for name in BaseModel.objects.order_by("name")
                                          .values_list("name", flat=True)]

    def sft_config(self) -> dict:
        steps = self.cleaned_data.get("max_steps")
        return {"max_steps": steps} if steps else {}


def form_errors(form) -> str:
    """A bound form's errors on one line, each with its field: "max_steps: ...; beta: ..."."""
    return "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())


def flat_errors(exc: ServiceError) -> list[str]:
    return [f"{exc.field}: {exc.message}" if exc.field and not exc.message.startswith(exc.field) else exc.message]


ROUND_FIELDS = {"sources[0]": "source", "sources[1]": "versus", "sources": "versus", "baseline": "baseline",
                "eval_project": "project"}


def add_round_error(form: forms.Form, exc: ServiceError) -> None:
    """A round service's error next to the form field it names (or above the form)."""
    field = ROUND_FIELDS.get(exc.field or "", exc.field)
    if field not in form.fields:
        field = None
    form.add_error(field, exc.message if field else "; ".join(flat_errors(exc)))



class JudgeRunForm(forms.Form):
    """Run an AI judge over a project's items: a reward checkpoint, or a chat endpoint (registered, or configured)."""
    judge = forms.ChoiceField(label="Judge")
    limit = forms.IntegerField(min_value=1, max_value=JUDGE_MAX_LIMIT, initial=100, label="Items at most")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        choices = [(f"checkpoint:{pk}", label) for pk, label in reward_checkpoint_choices() if pk]
        endpoints = [(f"endpoint:{name}", f"Chat endpoint · {name}") for name in
                     ChatEndpoint.objects.order_by("name").values_list("name", flat=True)]
        if settings.PS_JUDGE_API_BASE and settings.PS_JUDGE_MODEL:
            endpoints.insert(0, (JUDGE_API, f"Chat endpoint · {settings.PS_JUDGE_MODEL}"))
        choices = endpoints + choices
        self.fields["judge"].choices = [("", "— choose —")] + choices
