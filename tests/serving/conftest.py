"""Fixtures of the server tests: tiny checkpoints trained once, a test client, a live server."""

from __future__ import annotations

import pytest
from fixtures.models import tiny_config, train_tiny


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> tuple:
    """(localizer checkpoint, classifier checkpoint) of 2-step tiny models, trained once per session."""
    from multibox.jobs.train import train_classifier

    root = tmp_path_factory.mktemp("serve-models")
    loc, _ = train_tiny(root / "loc")
    cfg = tiny_config()
    cfg.train.steps = 1
    return loc, train_classifier(cfg, root / "cls")


@pytest.fixture(scope="session")
def predictor(checkpoints):
    from multibox.serving.predictor import Predictor

    return Predictor.from_checkpoints(checkpoints[0], device="cpu")


@pytest.fixture(scope="session")
def labelling_predictor(checkpoints):
    from multibox.serving.predictor import Predictor

    return Predictor.from_checkpoints(checkpoints[0], checkpoints[1], device="cpu")


@pytest.fixture
def client(predictor):
    """A TestClient of an app serving the tiny localizer, ready."""
    from serve_helpers import Client

    with Client(predictor) as c:
        yield c
