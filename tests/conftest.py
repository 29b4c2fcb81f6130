import pytest

from deepaas.api import create_app
from deepaas.config import Config
from deepaas.model import load_models


@pytest.fixture
def config():
    return Config(warm=True)


@pytest.fixture
def models():
    return load_models(["legacy", "modern", "static"])


@pytest.fixture
def app(config, models):
    return create_app(config, models)


@pytest.fixture
async def client(aiohttp_client, app):
    return await aiohttp_client(app)
