"""A small app that keeps documents in Cloudflare Vectorize through the official `cloudflare` SDK.

It reads its settings from the environment, as it would in production (CLOUDFLARE_ACCOUNT_ID,
CLOUDFLARE_API_TOKEN, and CLOUDFLARE_BASE_URL, which the SDK reads itself): under test, the
`vz_server` fixture points all of them at a local `vz serve`.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cloudflare import Cloudflare

NDJSON = {"Content-Type": "application/x-ndjson"}  # what Cloudflare expects for insert/upsert


class DocumentIndex:
    """Documents with a title and a category, searchable by vector."""

    def __init__(self, name: str, client: Cloudflare | None = None, account_id: str | None = None) -> None:
        self.name = name
        self.cf = client or Cloudflare()
        self.account_id = account_id or os.environ["CLOUDFLARE_ACCOUNT_ID"]
        self.api = self.cf.vectorize.indexes

    def create(self, dimensions: int) -> None:
        self.api.create(account_id=self.account_id, name=self.name,
                        config={"dimensions": dimensions, "metric": "cosine"})
        # Filtering on a property needs a metadata index, created before the vectors it covers.
        self.api.metadata_index.create(self.name, account_id=self.account_id, property_name="category",
                                       index_type="string")

    def add(self, docs: list[dict[str, Any]]) -> str:
        """Upsert {id, vector, title, category} documents; returns the mutation id."""
        body = "\n".join(json.dumps({"id": d["id"], "values": d["vector"],
                                     "metadata": {"title": d["title"], "category": d["category"]}})
                         for d in docs).encode()
        result = self.api.upsert(self.name, account_id=self.account_id, body=body, extra_headers=NDJSON)
        assert result is not None and result.mutation_id is not None
        return result.mutation_id

    def search(self, vector: list[float], *, category: str | None = None, top_k: int = 3) -> list[str]:
        """Titles of the nearest documents, optionally of one category."""
        result = self.api.query(self.name, account_id=self.account_id, vector=vector, top_k=top_k,
                                return_metadata="all", filter={"category": category} if category else None)
        return [m.metadata["title"] for m in (result.matches if result else None) or [] if m.metadata]

    def remove(self, ids: list[str]) -> None:
        self.api.delete_by_ids(self.name, account_id=self.account_id, ids=ids)

    def count(self) -> int:
        info = self.api.info(self.name, account_id=self.account_id)
        return info.vector_count if info and info.vector_count is not None else 0
