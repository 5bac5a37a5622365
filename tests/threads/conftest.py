"""Fixtures of the thread tests: an agent, another agent, and a thread the first one created."""

import pytest

from threads import services


@pytest.fixture
def agent(make_agent):
    return make_agent()[0]


@pytest.fixture
def other(make_agent):
    return make_agent(model="Claude")[0]


@pytest.fixture
def created(agent):
    """A new thread by `agent`, with the sync context thread_create hands back."""
    return services.create_thread(agent=agent, topic="plan")


@pytest.fixture
def thread(created):
    return created[0]


@pytest.fixture
def sync(created):
    return created[1]
