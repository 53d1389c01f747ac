"""Tests of search_app against a local `vz serve`: the `vz_server` fixture comes with vz (pip install
vzcli); nothing here mocks the SDK, and nothing leaves the machine."""

from __future__ import annotations

import io

import cloudflare
import pytest
from search_app import DocumentIndex

DOCS = [
    {"id": "moby", "vector": [1.0, 0.0, 0.0], "title": "Moby-Dick", "category": "books"},
    {"id": "alien", "vector": [0.9, 0.1, 0.0], "title": "Alien", "category": "films"},
    {"id": "dune", "vector": [0.8, 0.2, 0.1], "title": "Dune", "category": "books"},
    {"id": "heat", "vector": [0.0, 1.0, 0.0], "title": "Heat", "category": "films"},
]


@pytest.fixture
def docs(vz_server):
    """A fresh index holding DOCS (vz_server has emptied the server before this test)."""
    index = DocumentIndex("docs")
    index.create(dimensions=3)
    index.add(DOCS)
    return index


def test_search_ranks_by_similarity(docs):
    assert docs.search([1.0, 0.0, 0.0]) == ["Moby-Dick", "Alien", "Dune"]


def test_search_filters_by_category(docs):
    assert docs.search([1.0, 0.0, 0.0], category="films") == ["Alien", "Heat"]


def test_remove(docs):
    docs.remove(["moby", "unknown"])
    assert docs.count() == 3
    assert docs.search([1.0, 0.0, 0.0], top_k=1) == ["Alien"]


def test_each_test_starts_with_no_indexes(vz_server):
    assert vz_server.backend.list_indexes() == []


def test_errors_are_cloudflares(docs):
    with pytest.raises(cloudflare.BadRequestError) as e:
        docs.search([1.0, 0.0])  # 2 dimensions for a 3-dimensional index
    assert e.value.body["errors"][0]["code"] == 40006


def test_seed_through_the_backend(vz_server):
    """vz_server.backend reaches the same store directly, to seed or inspect without HTTP."""
    vz_server.backend.create_index("seeded", dimensions=3, metric="cosine")
    vz_server.backend.upsert("seeded", io.BytesIO(b'{"id": "x", "values": [0, 0, 1], "metadata": {"title": "X"}}'))
    assert DocumentIndex("seeded").search([0.0, 0.0, 1.0], top_k=1) == ["X"]
    assert vz_server.reset() == ["seeded"]
