"""Rows for tests. Items are built through the importer's grouping, like real data."""
import factory
from django.contrib.auth import get_user_model

from annotation.models import Item, ItemResponse, Membership, Project, Prompt, Response
from annotation.project_config import validate_project_config

User = get_user_model()


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "pw-12345678")

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class AdminFactory(UserFactory):
    username = factory.Sequence(lambda n: f"admin{n}")
    is_staff = True
    is_superuser = True


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"Project {n}")
    slug = factory.Sequence(lambda n: f"project-{n}")
    mode = "pairwise"
    config = factory.LazyAttribute(lambda o: validate_project_config(o.mode, {}))


def make_project(mode="pairwise", **config):
    return ProjectFactory(mode=mode, config=validate_project_config(mode, config))


def add_member(project, user):
    Membership.objects.get_or_create(project=project, user=user)
    return user


def make_item(project, texts=None, *, models=None, gold_answer=None, priority=0, external_id=None):
    """One item with the given response texts (default: as many as the mode needs)."""
    n = {"rating": 1, "pairwise": 2, "ranking": project.config.get("k", 4)}[project.mode]
    texts = texts or [f"response {i}" for i in range(n)]
    models = models or [f"model-{chr(97 + i)}" for i in range(len(texts))]
    prompt = Prompt.objects.create(
        project=project, external_id=external_id or f"p{Prompt.objects.count() + 1}",
        messages=[{"role": "user", "content": "Say something."}],
    )
    responses = [Response.objects.create(prompt=prompt, text=t, model_name=m) for t, m in zip(texts, models)]
    item = Item.objects.create(project=project, prompt=prompt, overlap=project.overlap, priority=priority,
                               is_gold=gold_answer is not None, gold_answer=gold_answer)
    for pos, r in enumerate(responses):
        ItemResponse.objects.create(item=item, response=r, position=pos)
    return item
