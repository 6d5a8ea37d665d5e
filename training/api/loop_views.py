"""API v1 for closing the loop: generation rounds, human evaluation, the AI judge and active learning.

Admins only (raters get 403, strangers 404 from the access helpers); views stay thin and call one service each.
"""
from __future__ import annotations

from drf_spectacular.plumbing import build_array_type, build_basic_type
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from annotation.api.boundary import JSONField
from annotation.access import access_project
from annotation.api.schema import error
from annotation.errors import Invalid, ServiceError
from annotation.quality import judge_agreement
from training import rounds, services
from training.access import access_checkpoint, access_job, access_round
from training.active_learning import active_learning_clear, active_learning_score
from training.endpoints import endpoint_get
from training.judge import API, judge_run

from .views import AdminView, _valid


SOURCE_CONFLICT = error("A source that cannot answer now: a checkpoint whose files are gone, or of a run that "
                        "has not succeeded.")


class SourceField(serializers.Field):
    """{"base_model": "tiny"}, {"checkpoint": 12} or {"endpoint": "gpt-x"} (a named chat endpoint)."""

    def to_internal_value(self, data):
        if not isinstance(data, dict) or len(data) != 1 or not ({"base_model", "checkpoint", "endpoint"} & set(data)):
            raise serializers.ValidationError('must be {"base_model": name}, {"checkpoint": id} or {"endpoint": name}')
        return data

    def to_representation(self, value):
        return value


def _source(user, data: dict, field: str):
    """A source from a request (the views are admins' only)."""
    if "checkpoint" in data:
        return access_checkpoint(user, data["checkpoint"])
    if "endpoint" in data:
        return endpoint_get(str(data["endpoint"]), field=field)
    try:
        return services.base_model_get(name=str(data["base_model"]))  # the built-in ones are registered on first use
    except ServiceError as exc:
        raise Invalid(exc.message, field=field) from exc


def _progress(work) -> float | None:
    if work is None:
        return None
    return work.progress if hasattr(work, "progress") else (work.step / work.total_steps if work.total_steps else 0.0)


class RoundSerializer(serializers.Serializer):
    def to_representation(self, rnd):
        runs = {run.pk: run for run in rnd.runs.all()}
        jobs = {job.pk: job for job in rnd.jobs.all()}

        def work(source):
            return runs.get(source["run"]) if "run" in source else jobs.get(source.get("job"))

        return {
            "id": rnd.pk, "name": rnd.name, "kind": rnd.kind, "status": rnd.status, "project": rnd.project_id,
            "prompts_project": rnd.prompts_project_id, "params": rnd.params, "error": rnd.error,
            "sources": [{**s, "run_status": work(s).status if work(s) else None, "progress": _progress(work(s))}
                        for s in rnd.sources],
            "checkpoint": rnd.checkpoint_id, "baseline_checkpoint": rnd.baseline_checkpoint_id,
            "baseline_model": rnd.baseline_model.name if rnd.baseline_model_id else None,
            "prompts_created": rnd.prompts_created, "items_created": rnd.items_created,
            "created_at": rnd.created_at, "finished_at": rnd.finished_at,
        }


class JobSerializer(serializers.Serializer):
    def to_representation(self, job):
        return {
            "id": job.pk, "kind": job.kind, "status": job.status, "project": job.project_id,
            "reward_checkpoint": job.reward_checkpoint_id,
            "params": {k: v for k, v in job.params.items() if k != "rubric"}, "step": job.step,
            "total_steps": job.total_steps, "result": job.result, "error": job.error, "created_at": job.created_at,
            "started_at": job.started_at, "finished_at": job.finished_at,
        }


class SamplingSerializer(serializers.Serializer):
    temperature = serializers.FloatField(required=False, default=0.8, min_value=0, max_value=5)
    top_p = serializers.FloatField(required=False, default=0.95, min_value=0.0001, max_value=1)
    max_new_tokens = serializers.IntegerField(required=False, default=128, min_value=1, max_value=rounds.MAX_NEW_TOKENS)
    max_prompts = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)


class GenerationRoundCreateSerializer(SamplingSerializer):
    sources = serializers.ListField(child=SourceField(), min_length=1, max_length=rounds.MAX_SOURCES)
    n = serializers.IntegerField(required=False, default=2, min_value=1, max_value=rounds.MAX_N)
    prompts_from = serializers.IntegerField(required=False, allow_null=True, default=None)


class HumanEvalCreateSerializer(SamplingSerializer):
    project = serializers.IntegerField()
    baseline = SourceField(required=False, allow_null=True, default=None)
    eval_project = serializers.IntegerField(required=False, allow_null=True, default=None)
    temperature = serializers.FloatField(required=False, default=0.7, min_value=0, max_value=5)
    max_prompts = serializers.IntegerField(required=False, allow_null=True, default=50, min_value=1)


class CritiqueReviseCreateSerializer(SamplingSerializer):
    source = SourceField(help_text='The model that answers, critiques and revises: {"base_model": name}, '
                                   '{"checkpoint": id} or {"endpoint": name}.')
    constitution = JSONField(required=False, default=None,
                                         help_text="A list of principles (default: a short built-in constitution).")
    project = serializers.IntegerField(required=False, allow_null=True, default=None,
                                       help_text="The pairwise project for the pairs (default: a new one).")
    spot_check = serializers.FloatField(required=False, default=0.2, min_value=0, max_value=1,
                                        help_text="The share of pairs shown to raters, blind.")
    seed = serializers.IntegerField(required=False, default=0, min_value=0, max_value=2**31 - 1)
    temperature = serializers.FloatField(required=False, default=0.7, min_value=0, max_value=5)
    max_new_tokens = serializers.IntegerField(required=False, default=256, min_value=1, max_value=rounds.MAX_NEW_TOKENS)


class ChainSerializer(serializers.Serializer):
    def to_representation(self, chain):
        return {
            "id": chain.pk, "round": chain.round_id, "prompt": chain.prompt_id, "item": chain.item_id,
            "messages": chain.messages, "principle_index": chain.principle_index, "principle": chain.principle,
            "answer": chain.answer, "critique": chain.critique, "revision": chain.revision,
            "answer_response": chain.answer_response_id, "revision_response": chain.revision_response_id,
            "spot_check": chain.spot_check,
        }


class JudgeSerializer(serializers.Serializer):
    checkpoint = serializers.IntegerField(required=False, allow_null=True, default=None,
                                          help_text="A reward checkpoint; leave out to use the chat endpoint.")
    api = serializers.BooleanField(required=False, default=False, help_text="Use the configured chat endpoint.")
    endpoint = serializers.CharField(required=False, allow_blank=True, default="", max_length=100,
                                     help_text="A registered chat endpoint, by name (/api/v1/endpoints/).")
    limit = serializers.IntegerField(required=False, default=100, min_value=1, max_value=10_000)
    rubric = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)


class ActiveLearningSerializer(serializers.Serializer):
    reward_checkpoint = serializers.IntegerField(required=False, allow_null=True, default=None)


class GenerationRoundListView(AdminView):
    @extend_schema(responses=RoundSerializer(many=True))
    def get(self, request, project_id):
        project = access_project(request.user, project_id, admin=True)
        qs = project.generation_rounds.prefetch_related("runs").select_related("baseline_model")[:200]
        return Response(RoundSerializer(qs, many=True).data)

    @extend_schema(request=GenerationRoundCreateSerializer, responses={201: RoundSerializer, 409: SOURCE_CONFLICT})
    def post(self, request, project_id):
        user = request.user
        project = access_project(user, project_id, admin=True)
        data = _valid(GenerationRoundCreateSerializer, request.data)
        rnd = rounds.generation_round_launch(
            project=project,
            sources=[_source(user, s, f"sources[{i}]") for i, s in enumerate(data["sources"])],
            n=data["n"], temperature=data["temperature"], top_p=data["top_p"],
            max_new_tokens=data["max_new_tokens"], max_prompts=data["max_prompts"],
            prompts_from=access_project(user, data["prompts_from"], admin=True) if data["prompts_from"] else None,
            created_by=user,
        )
        return Response(RoundSerializer(rnd).data, status=status.HTTP_201_CREATED)


class RoundDetailView(AdminView):
    @extend_schema(responses=RoundSerializer)
    def get(self, request, round_id):
        return Response(RoundSerializer(access_round(request.user, round_id)).data)


class CritiqueReviseView(AdminView):
    @extend_schema(request=CritiqueReviseCreateSerializer, responses={201: RoundSerializer, 409: SOURCE_CONFLICT})
    def post(self, request, project_id):
        """A critique-and-revise round on this project's prompts (its pairs go to ``project`` or a new one)."""
        user = request.user
        prompts_from = access_project(user, project_id, admin=True)
        data = _valid(CritiqueReviseCreateSerializer, request.data)
        rnd = rounds.critique_revise_round_launch(
            source=_source(user, data["source"], "source"), prompts_from=prompts_from,
            constitution=data["constitution"],
            project=access_project(user, data["project"], admin=True) if data["project"] else None,
            max_prompts=data["max_prompts"], spot_check=data["spot_check"], seed=data["seed"],
            temperature=data["temperature"], top_p=data["top_p"], max_new_tokens=data["max_new_tokens"],
            created_by=user,
        )
        return Response(RoundSerializer(rnd).data, status=status.HTTP_201_CREATED)


class RoundChainsView(AdminView):
    @extend_schema(responses=ChainSerializer(many=True))
    def get(self, request, round_id):
        """A critique-and-revise round's chains: answer, principle, critique, revision."""
        rnd = access_round(request.user, round_id)
        return Response(ChainSerializer(rnd.chains.all()[:2000], many=True).data)


class HumanEvalView(AdminView):
    @extend_schema(responses={200: dict})
    def get(self, request, checkpoint_id):
        checkpoint = access_checkpoint(request.user, checkpoint_id)
        return Response(rounds.human_eval_result(checkpoint=checkpoint))

    @extend_schema(request=HumanEvalCreateSerializer, responses={201: RoundSerializer, 409: SOURCE_CONFLICT})
    def post(self, request, checkpoint_id):
        user = request.user
        checkpoint = access_checkpoint(user, checkpoint_id)
        data = _valid(HumanEvalCreateSerializer, request.data)
        rnd = rounds.human_eval_round_create(
            project=access_project(user, data["project"], admin=True),
            checkpoint=checkpoint,
            baseline=_source(user, data["baseline"], "baseline") if data["baseline"] else None,
            eval_project=access_project(user, data["eval_project"], admin=True) if data["eval_project"] else None,
            max_prompts=data["max_prompts"], temperature=data["temperature"], top_p=data["top_p"],
            max_new_tokens=data["max_new_tokens"], created_by=user,
        )
        return Response(RoundSerializer(rnd).data, status=status.HTTP_201_CREATED)


class JudgeView(AdminView):
    @extend_schema(responses={200: build_array_type(build_basic_type(OpenApiTypes.OBJECT))})
    def get(self, request, project_id):
        return Response(judge_agreement(access_project(request.user, project_id, admin=True)))

    @extend_schema(request=JudgeSerializer, responses={202: JobSerializer,
                                                       409: error("A judge is already running on this project.")})
    def post(self, request, project_id):
        user = request.user
        project = access_project(user, project_id, admin=True)
        data = _valid(JudgeSerializer, request.data)
        if sum(map(bool, (data["checkpoint"], data["api"], data["endpoint"]))) != 1:
            raise Invalid('give a reward "checkpoint", "api": true or a chat "endpoint" (one of them)',
                          field="checkpoint")
        if data["endpoint"]:
            judge = endpoint_get(data["endpoint"], field="endpoint")
        else:
            judge = API if data["api"] else access_checkpoint(user, data["checkpoint"])
        job = judge_run(project=project, judge=judge, limit=data["limit"], rubric=data["rubric"], created_by=user)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class ActiveLearningView(AdminView):
    @extend_schema(request=ActiveLearningSerializer, responses={
        202: JobSerializer, 409: error("Scoring is already running on this project.")})
    def post(self, request, project_id):
        user = request.user
        project = access_project(user, project_id, admin=True)
        data = _valid(ActiveLearningSerializer, request.data)
        checkpoint = access_checkpoint(user, data["reward_checkpoint"]) if data["reward_checkpoint"] else None
        job = active_learning_score(project=project, reward_checkpoint=checkpoint, created_by=user)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={200: dict})
    def delete(self, request, project_id):
        project = access_project(request.user, project_id, admin=True)
        return Response({"items_reset": active_learning_clear(project=project)})


class JobDetailView(AdminView):
    @extend_schema(responses=JobSerializer)
    def get(self, request, job_id):
        return Response(JobSerializer(access_job(request.user, job_id)).data)
