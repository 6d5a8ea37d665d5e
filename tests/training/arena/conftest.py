"""Arena fixtures: chat endpoints on a loopback server, arenas, and battles answered in this process."""
import pytest

from annotation.services import project_create
from tests.factories import UserFactory, add_member
from training import arena
from training.endpoints import endpoint_register


def make_arena(sources, *, name="Arena", **config):
    return project_create(name=name, mode="arena", config={"sources": sources, **config})


def register(name, server, model=None):
    return endpoint_register(name=name, api_base=server.base, model=model or name)


def answer(battle):
    """Both sides of a battle, generated here as the worker would (for sources that are chat endpoints)."""
    for side in range(len(battle.sides)):
        arena.battle_generate_execute(battle_id=battle.pk, side=side)
    battle.refresh_from_db()
    return battle


@pytest.fixture
def ann(db):
    return UserFactory(username="ann")


@pytest.fixture
def bob(db):
    return UserFactory(username="bob")
