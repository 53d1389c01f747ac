"""The official `cloudflare` Python SDK (5.9.0) against `vz serve`: every Vectorize method it has.

The SDK talks real HTTP to a `vz serve` subprocess on 127.0.0.1 (helpers_server), as it would
to api.cloudflare.com with `base_url` changed. A counting httpx event hook checks that no call is
retried (the server sends `x-should-retry: false` on every 4xx, so a 409 is sent exactly once).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import cloudflare  # a test dependency: missing, these tests fail (they never skip)
import httpx
import pytest
from cloudflare import Cloudflare
from helpers_server import ServedStore, served_store  # noqa: F401  (the fixture)

pytestmark = [
    pytest.mark.interop,
    # 5.9.0 deprecates bytes in `body` for insert/upsert, but that is how its docs and users call it
    pytest.mark.filterwarnings("ignore:Passing raw bytes as `body` is deprecated:DeprecationWarning"),
]

ND = (b'{"id":"a","values":[1,0,0],"metadata":{"genre":"x","year":2001}}\n'
      b'{"id":"b","values":[0,1,0],"namespace":"ns1","metadata":{"genre":"y"}}\n'
      b'{"id":"c","values":[0.9,0.1,0]}\n')


class Counting:
    """An httpx client whose requests are counted (method, path)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.http = httpx.Client(event_hooks={"request": [self._hook]}, timeout=30)

    def _hook(self, request: httpx.Request) -> None:
        self.requests.append((request.method, request.url.path))


@pytest.fixture
def sdk(served_store: ServedStore) -> Iterator[tuple[Cloudflare, ServedStore, Counting]]:  # noqa: F811
    counting = Counting()
    client = Cloudflare(api_token=served_store.token, base_url=served_store.api, http_client=counting.http)
    yield client, served_store, counting
    client.close()


def test_every_vectorize_method(sdk: tuple[Cloudflare, ServedStore, Counting]) -> None:
    cf, srv, counting = sdk
    acct = srv.account
    idx = cf.vectorize.indexes

    created = idx.create(account_id=acct, name="docs", config={"dimensions": 3, "metric": "cosine"},
                         description="d")
    assert created is not None
    assert (created.name, created.description) == ("docs", "d")
    assert created.config is not None and created.config.dimensions == 3 and created.config.metric == "cosine"
    preset = idx.create(account_id=acct, name="small", config={"preset": "@cf/baai/bge-small-en-v1.5"})
    assert preset is not None and preset.config is not None and preset.config.dimensions == 384

    assert sorted(i.name for i in idx.list(account_id=acct)) == ["docs", "small"]
    got = idx.get("docs", account_id=acct)
    assert got is not None and got.created_on == created.created_on

    mi = idx.metadata_index.create("docs", account_id=acct, property_name="genre", index_type="string")
    assert mi is not None and len(mi.mutation_id or "") == 36
    listed = idx.metadata_index.list("docs", account_id=acct)
    assert listed is not None and [(m.property_name, m.index_type) for m in listed.metadata_indexes or []] == [
        ("genre", "string")]

    # insert: the SDK sends bytes as Content-Type application/json; vz accepts it as NDJSON
    ins = idx.insert("docs", account_id=acct, body=ND)
    assert ins is not None and len(ins.mutation_id or "") == 36
    info = idx.info("docs", account_id=acct)
    assert info is not None and info.vector_count == 3 and info.dimensions == 3
    assert info.processed_up_to_mutation == ins.mutation_id
    assert isinstance(info.processed_up_to_datetime, datetime)

    ups = idx.upsert("docs", account_id=acct, body=b'{"id":"c","values":[0,0,1]}\nnot json\n',
                     unparsable_behavior="discard")
    assert ups is not None and ups.mutation_id != ins.mutation_id

    q = idx.query("docs", account_id=acct, vector=[1, 0.5, 0], top_k=2, return_values=True,
                  return_metadata="all")
    assert q is not None and q.count == 2 and q.matches is not None
    assert [m.id for m in q.matches] == ["a", "b"]
    first = q.matches[0]
    assert first.score == pytest.approx(0.894427191) and first.values == [1.0, 0.0, 0.0]
    assert first.metadata == {"genre": "x", "year": 2001}
    q = idx.query("docs", account_id=acct, vector=[1, 1, 1], filter={"genre": {"$eq": "y"}},
                  return_metadata="indexed")
    assert q is not None and [(m.id, m.metadata, m.namespace) for m in q.matches or []] == [
        ("b", {"genre": "y"}, "ns1")]
    # namespace and vectorId are not SDK parameters: extra_body, as the reference documents
    q = idx.query("docs", account_id=acct, vector=[1, 0, 0], extra_body={"namespace": "ns1"})
    assert q is not None and [m.id for m in q.matches or []] == ["b"]
    q = idx.query("docs", account_id=acct, vector=[], top_k=1, extra_body={"vector": None, "vectorId": "c"})
    assert q is not None and [(m.id, m.score) for m in q.matches or []] == [("c", 1.0)]

    vecs = idx.get_by_ids("docs", account_id=acct, ids=["b", "nope", "a"])
    assert vecs == [{"id": "b", "values": [0.0, 1.0, 0.0], "metadata": {"genre": "y"}, "namespace": "ns1"},
                    {"id": "a", "values": [1.0, 0.0, 0.0], "metadata": {"genre": "x", "year": 2001}}]

    page = idx.list_vectors("docs", account_id=acct, count=2)
    assert page is not None and (page.count, page.total_count, page.is_truncated) == (2, 3, True)
    assert [v.id for v in page.vectors] == ["a", "b"] and page.next_cursor
    page2 = idx.list_vectors("docs", account_id=acct, count=2, cursor=page.next_cursor)
    assert page2 is not None and [v.id for v in page2.vectors] == ["c"]
    assert page2.is_truncated is False and page2.next_cursor is None

    dele = idx.delete_by_ids("docs", account_id=acct, ids=["a", "zz"])
    assert dele is not None and len(dele.mutation_id or "") == 36
    info = idx.info("docs", account_id=acct)
    assert info is not None and info.vector_count == 2

    mid = idx.metadata_index.delete("docs", account_id=acct, property_name="genre")
    assert mid is not None and len(mid.mutation_id or "") == 36
    listed = idx.metadata_index.list("docs", account_id=acct)
    assert listed is not None and listed.metadata_indexes == []

    assert idx.delete("docs", account_id=acct) is None
    assert [i.name for i in idx.list(account_id=acct)] == ["small"]
    # every call above was one request: nothing was retried
    assert len(counting.requests) == 22


def _status_error(excinfo: Any) -> dict[str, Any]:
    body = excinfo.value.response.json()
    assert body["success"] is False and body["result"] is None
    assert excinfo.value.response.headers["x-should-retry"] == "false"
    return body["errors"][0]  # type: ignore[no-any-return]


def test_sdk_errors_are_typed_and_not_retried(sdk: tuple[Cloudflare, ServedStore, Counting]) -> None:
    cf, srv, counting = sdk
    acct = srv.account
    idx = cf.vectorize.indexes
    idx.create(account_id=acct, name="docs", config={"dimensions": 3, "metric": "cosine"})

    before = len(counting.requests)
    with pytest.raises(cloudflare.ConflictError) as conflict:
        idx.create(account_id=acct, name="docs", config={"dimensions": 3, "metric": "cosine"})
    assert _status_error(conflict)["code"] == 3002
    assert len(counting.requests) == before + 1  # a 409 is not retried

    with pytest.raises(cloudflare.NotFoundError) as missing:
        idx.get("nope", account_id=acct)
    assert _status_error(missing) == {"code": 3000, "message": 'vectorize.index.not_found - Index name "nope"'}

    with pytest.raises(cloudflare.BadRequestError) as bad:
        idx.query("docs", account_id=acct, vector=[1, 0, 0], return_metadata=True)  # type: ignore[arg-type]
    assert _status_error(bad) == {"code": 40026, "message": "Failed to parse the request body as JSON: "
                                                            "returnMetadata: expected value"}

    with pytest.raises(cloudflare.BadRequestError) as too_many:
        idx.get_by_ids("docs", account_id=acct, ids=[str(i) for i in range(21)])
    assert _status_error(too_many)["message"] == "too many ids in payload; max id count is 20, got 21"

    with pytest.raises(cloudflare.BadRequestError) as dims:
        idx.insert("docs", account_id=acct, body=b'{"id":"x","values":[1,2]}')
    assert _status_error(dims)["code"] == 40012

    wrong = Cloudflare(api_token="wrong", base_url=srv.api, max_retries=0)
    with pytest.raises(cloudflare.AuthenticationError) as auth:
        wrong.vectorize.indexes.list(account_id=acct)
    assert _status_error(auth) == {"code": 10000, "message": "Authentication error"}
    wrong.close()
    assert len(counting.requests) == before + 5
