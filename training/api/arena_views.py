"""API v1 for arena battles and their leaderboard (members of the arena), and for the chat endpoints they, rounds
and judges name (admins). Views stay thin: training.arena and training.endpoints do the work."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import access_project
from annotation.api.schema import BAD_INPUT, error
from annotation.errors import Invalid
from training import arena, endpoints
from training.access import access_battle
from training.models import ChatEndpoint

from .views import AdminView, _valid

NOT_FOUND = error("Not found, or not yours to see: another rater's battle, a project you are not a member of.")


class BattleCreateSerializer(serializers.Serializer):
    prompt = serializers.CharField(max_length=100_000, trim_whitespace=True,
                                   help_text="What the two anonymous sources answer.")


class BattleCreatedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=arena.Status.choices)


class BattleResponseSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    text = serializers.CharField(help_text="As far as it has been written; it grows while the battle is generating.")


class BattleSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField()
    status = serializers.ChoiceField(choices=arena.Status.choices)
    prompt = serializers.CharField()
    responses = BattleResponseSerializer(many=True, help_text="A, then B.")
    choice = serializers.CharField(allow_null=True)
    sources = serializers.ListField(child=serializers.CharField(), allow_null=True,
                                    help_text="The names of A and B: null until the rater has voted.")
    error = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    voted_at = serializers.DateTimeField(allow_null=True)


class VoteSerializer(serializers.Serializer):
    choice = serializers.ChoiceField(choices=arena.CHOICES, help_text="A, B, tie or both_bad.")
    time_spent_ms = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0,
                                             max_value=86_400_000)


class VotedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    choice = serializers.CharField()
    sources = serializers.ListField(child=serializers.CharField(), help_text="[name of A, name of B].")


class LeaderboardRowSerializer(serializers.Serializer):
    source = serializers.CharField()
    rating = serializers.FloatField(allow_null=True, help_text="Bradley-Terry, on the Elo scale; null before any vote.")
    ci_low = serializers.FloatField(allow_null=True, help_text="95% bootstrap interval.")
    ci_high = serializers.FloatField(allow_null=True)
    battles = serializers.IntegerField()
    wins = serializers.IntegerField()
    ties = serializers.IntegerField(help_text="Ties and 'both bad' votes.")


class LeaderboardSerializer(serializers.Serializer):
    rows = LeaderboardRowSerializer(many=True)
    battles = serializers.IntegerField()
    method = serializers.CharField()
    interval = serializers.CharField()
    samples = serializers.IntegerField()
    scale = serializers.CharField()


class BattleListView(APIView):
    @extend_schema(
        request=BattleCreateSerializer,
        responses={201: BattleCreatedSerializer, 400: BAD_INPUT,
                   403: error("You are paused on this project."), 404: NOT_FOUND,
                   409: error("The arena is closed, or has fewer than two sources that can answer.")},
    )
    def post(self, request, project_id):
        """Start a battle: two sources drawn at random answer the prompt, anonymously, on a worker."""
        project = access_project(request.user, project_id)
        data = _valid(BattleCreateSerializer, request.data)
        battle = arena.battle_create(project=project, rater=request.user, prompt=data["prompt"])
        return Response({"id": battle.pk, "status": battle.status}, status=status.HTTP_201_CREATED)


class BattleDetailView(APIView):
    @extend_schema(responses={200: BattleSerializer, 404: NOT_FOUND})
    def get(self, request, battle_id):
        """The battle as its rater sees it; poll it while ``status`` is ``generating`` to see the texts grow."""
        return Response(arena.battle_view(access_battle(request.user, battle_id)))


class BattleVoteView(APIView):
    @extend_schema(
        request=VoteSerializer,
        responses={200: VotedSerializer, 400: BAD_INPUT,
                   403: error("Only the rater who started a battle votes on it."), 404: NOT_FOUND,
                   409: error("The answers are still being written, a source failed, or another vote was given.")},
    )
    def post(self, request, battle_id):
        """Vote A, B, tie or both_bad; the answer names the two sources. The same vote again changes nothing."""
        battle = access_battle(request.user, battle_id)
        data = _valid(VoteSerializer, request.data)
        battle, _ = arena.battle_vote(battle=battle, rater=request.user, choice=data["choice"],
                                      time_spent_ms=data["time_spent_ms"])
        return Response({"id": battle.pk, "status": battle.status, "choice": battle.choice,
                         "sources": battle.source_names})


class LeaderboardView(APIView):
    @extend_schema(responses={200: LeaderboardSerializer, 400: BAD_INPUT,
                              403: error("Admins only: the leaderboard names every source, and raters answer blind."),
                              404: NOT_FOUND})
    def get(self, request, project_id):
        """Bradley-Terry ratings of the arena's sources from every vote, with 95% bootstrap intervals (admins)."""
        project = access_project(request.user, project_id, admin=True)
        if project.mode != "arena":
            raise Invalid(f"'{project.slug}' is a {project.mode} project, not an arena", field="project")
        return Response(arena.leaderboard(project=project))


# --- chat endpoints (admins) ---------------------------------------------------------------------


class EndpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = ChatEndpoint
        fields = ["name", "api_base", "model", "api_key_env", "timeout", "description", "created_at"]
        read_only_fields = ["created_at"]
        extra_kwargs = {"name": {"validators": []}}  # taken names are a 409 from the service


ENDPOINT_LIST = inline_serializer("EndpointList", {
    "results": EndpointSerializer(many=True),
    "judge": serializers.CharField(allow_blank=True, help_text="The AI judge's configured endpoint, if any."),
})


class EndpointListView(AdminView):
    @extend_schema(responses={200: ENDPOINT_LIST, 403: error("Admins only.")})
    def get(self, request):
        """Registered chat endpoints; the AI judge's configured one is usable by its name too."""
        rows = ChatEndpoint.objects.order_by("name")
        return Response({"results": EndpointSerializer(rows, many=True).data,
                         "judge": endpoints.judge_endpoint_name()})

    @extend_schema(request=EndpointSerializer,
                   responses={201: EndpointSerializer, 400: BAD_INPUT, 403: error("Admins only."),
                              409: error("The name is taken.")})
    def post(self, request):
        """Name an OpenAI-compatible chat endpoint. The key stays in the environment variable ``api_key_env``."""
        data = _valid(EndpointSerializer, request.data)
        endpoint = endpoints.endpoint_register(**data)
        return Response(EndpointSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class EndpointDetailView(AdminView):
    @extend_schema(responses={204: None, 403: error("Admins only."), 404: error("No such endpoint.")})
    def delete(self, request, name):
        endpoints.endpoint_delete(name=name)
        return Response(status=status.HTTP_204_NO_CONTENT)
