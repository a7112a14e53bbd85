"""Test-wide settings: offline, CPU, quiet."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DISABLE_TQDM", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    """The tiny recipe's tokenizer, trained once per test session (tests/fixtures/tiny_recipe.yaml)."""
    from tests.fixtures.recipe_runs import shared_tokenizer

    return shared_tokenizer(tmp_path_factory)
