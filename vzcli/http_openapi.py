"""The OpenAPI 3 document of the API `vz serve` answers (GET /client/v4/openapi.json)."""

from __future__ import annotations

from typing import Any

from vzcli import limits

API_PREFIX = "/client/v4"
INDEXES = "/accounts/{account_id}/vectorize/v2/indexes"


def openapi_document() -> dict[str, Any]:
    """The document, built on first use."""
    global _OPENAPI
    if _OPENAPI is None:
        _OPENAPI = _build_openapi()
    return _OPENAPI


_OPENAPI: dict[str, Any] | None = None


def _build_openapi() -> dict[str, Any]:
    from vzcli import __version__

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def ok(result: dict[str, Any]) -> dict[str, Any]:
        return {"description": "Success: the envelope with `result`.", "content": {"application/json": {
            "schema": {"allOf": [ref("Envelope"), {"type": "object", "properties": {"result": result}}]}}}}

    err = {"description": "Failure: the envelope with `errors` (`x-should-retry: false`).",
           "content": {"application/json": {"schema": ref("Failure")}}}
    name_param = {"name": "index_name", "in": "path", "required": True, "schema": {"type": "string"}}
    account_param = {"name": "account_id", "in": "path", "required": True, "schema": {"type": "string"},
                     "description": "Any value: the local server has one store for every account."}
    mutation = ref("Mutation")

    def op(op_id: str, summary: str, result: dict[str, Any], *, body: dict[str, Any] | None = None,
           index: bool = True, params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        o: dict[str, Any] = {"operationId": op_id, "summary": summary,
                             "parameters": [account_param] + ([name_param] if index else []) + (params or []),
                             "responses": {"200": ok(result), "4XX": err}}
        if body is not None:
            o["requestBody"] = {"required": True, "content": body}
        return o

    def schema_body(name: str) -> dict[str, Any]:
        return {"application/json": {"schema": ref(name)}}

    ndjson_body = {
        "application/x-ndjson": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": {"type": "string", "format": "binary"},
                             "description": "raw NDJSON (what the cloudflare SDK sends), or a JSON string of it"},
        "multipart/form-data": {"schema": {"type": "object", "required": ["vectors"], "properties": {
            "vectors": {"type": "string", "format": "binary"}}}},
    }
    unparsable = {"name": "unparsable-behavior", "in": "query", "required": False,
                  "schema": {"type": "string", "enum": ["error", "discard"], "default": "error"}}
    base = API_PREFIX + INDEXES
    idx = base + "/{index_name}"
    return {
        "openapi": "3.0.3",
        "info": {"title": "vz: local Cloudflare Vectorize REST API v2", "version": __version__,
                 "description": "Cloudflare's Vectorize V2 REST API served from a local vz store. Every "
                                "response is the envelope {success, errors, messages, result}."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"api_key": []}],
        "paths": {
            base: {
                "get": op("vectorize-list-vectorize-indexes", "List indexes", {"type": "array", "items": ref("Index")},
                          index=False),
                "post": op("vectorize-create-vectorize-index", "Create an index", ref("Index"),
                           body=schema_body("CreateIndex"), index=False),
            },
            idx: {
                "get": op("vectorize-get-vectorize-index", "Get an index", ref("Index")),
                "delete": op("vectorize-delete-vectorize-index", "Delete an index", {"nullable": True}),
            },
            idx + "/info": {"get": op("vectorize-index-info", "Index info", ref("Info"))},
            idx + "/insert": {"post": op("vectorize-insert-vector", "Insert vectors (NDJSON, at most 5000)",
                                         mutation, body=ndjson_body, params=[unparsable])},
            idx + "/upsert": {"post": op("vectorize-upsert-vector", "Upsert vectors (NDJSON, at most 5000)",
                                         mutation, body=ndjson_body, params=[unparsable])},
            idx + "/query": {"post": op("vectorize-query-vector", "Query nearest neighbours", ref("QueryResult"),
                                        body=schema_body("Query"))},
            idx + "/get_by_ids": {"post": op("vectorize-get-vectors-by-id", "Get vectors by id (at most 20)",
                                             {"type": "array", "items": ref("Vector")}, body=schema_body("Ids"))},
            idx + "/delete_by_ids": {"post": op("vectorize-delete-vectors-by-id", "Delete vectors by id (at most 100)",
                                                mutation, body=schema_body("Ids"))},
            idx + "/list": {"get": op("vectorize-list-vectors", "List vector ids", ref("VectorList"), params=[
                {"name": "count", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                                            "default": 100}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}}])},
            idx + "/metadata_index/create": {"post": op("vectorize-create-metadata-index", "Create a metadata index",
                                                        mutation, body=schema_body("MetadataIndex"))},
            idx + "/metadata_index/list": {"get": op("vectorize-list-metadata-indexes", "List metadata indexes", {
                "type": "object", "properties": {"metadataIndexes": {"type": "array", "items": ref("MetadataIndex")}}})},
            idx + "/metadata_index/delete": {"post": op("vectorize-delete-metadata-index", "Delete a metadata index",
                                                        mutation, body={"application/json": {"schema": {
                                                            "type": "object", "required": ["propertyName"],
                                                            "properties": {"propertyName": {"type": "string"}}}}})},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "api_key": {"type": "apiKey", "in": "header", "name": "X-Auth-Key"}},
            "schemas": {
                "Message": {"type": "object", "required": ["code", "message"],
                            "properties": {"code": {"type": "integer"}, "message": {"type": "string"}}},
                "Envelope": {"type": "object", "required": ["success", "errors", "messages", "result"],
                             "properties": {"success": {"type": "boolean"},
                                            "errors": {"type": "array", "items": ref("Message")},
                                            "messages": {"type": "array", "items": ref("Message")},
                                            "result": {}}},
                "Failure": {"allOf": [ref("Envelope"), {"type": "object", "properties": {
                    "success": {"type": "boolean", "enum": [False]}, "result": {"nullable": True}}}]},
                "Mutation": {"type": "object", "required": ["mutationId"],
                             "properties": {"mutationId": {"type": "string", "format": "uuid"}}},
                "Config": {"type": "object", "required": ["dimensions", "metric"], "properties": {
                    "dimensions": {"type": "integer", "minimum": limits.MIN_DIMENSIONS,
                                   "maximum": limits.MAX_DIMENSIONS},
                    "metric": {"type": "string", "enum": list(limits.METRICS)}}},
                "CreateIndex": {"type": "object", "required": ["name", "config"], "properties": {
                    "name": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,63}$"},
                    "description": {"type": "string"},
                    "config": {"oneOf": [ref("Config"), {"type": "object", "required": ["preset"], "properties": {
                        "preset": {"type": "string", "enum": list(limits.PRESETS)}}}]}}},
                "Index": {"type": "object", "required": ["name", "config", "created_on", "modified_on"],
                          "properties": {"name": {"type": "string"}, "description": {"type": "string"},
                                         "config": ref("Config"), "created_on": {"type": "string"},
                                         "modified_on": {"type": "string"}}},
                "Info": {"type": "object", "required": ["dimensions", "vectorCount"], "properties": {
                    "dimensions": {"type": "integer"}, "vectorCount": {"type": "integer"},
                    "processedUpToDatetime": {"type": "string"}, "processedUpToMutation": {"type": "string"}}},
                "Query": {"type": "object", "properties": {
                    "vector": {"type": "array", "items": {"type": "number"}},
                    "vectorId": {"type": "string", "description": "query by a stored vector (not in "
                                                                  "Cloudflare's OAS; wrangler sends it)"},
                    "topK": {"type": "number", "default": limits.TOPK_DEFAULT, "maximum": limits.TOPK_MAX},
                    "returnValues": {"type": "boolean", "default": False},
                    "returnMetadata": {"type": "string", "enum": ["none", "indexed", "all"], "default": "none"},
                    "namespace": {"type": "string"}, "filter": {"type": "object"}}},
                "Match": {"type": "object", "required": ["id", "score"], "properties": {
                    "id": {"type": "string"}, "score": {"type": "number"},
                    "values": {"type": "array", "items": {"type": "number"}},
                    "metadata": {"type": "object"}, "namespace": {"type": "string"}}},
                "QueryResult": {"type": "object", "required": ["count", "matches"], "properties": {
                    "count": {"type": "integer"}, "matches": {"type": "array", "items": ref("Match")}}},
                "Ids": {"type": "object", "properties": {"ids": {"type": "array", "items": {"type": "string"}}}},
                "Vector": {"type": "object", "required": ["id", "values"], "properties": {
                    "id": {"type": "string"}, "values": {"type": "array", "items": {"type": "number"}},
                    "metadata": {"type": "object"}, "namespace": {"type": "string"}}},
                "VectorList": {"type": "object", "required": ["count", "totalCount", "isTruncated", "vectors"],
                               "properties": {
                                   "count": {"type": "integer"}, "totalCount": {"type": "integer"},
                                   "isTruncated": {"type": "boolean"},
                                   "nextCursor": {"type": "string", "nullable": True},
                                   "cursorExpirationTimestamp": {"type": "string", "nullable": True},
                                   "vectors": {"type": "array", "items": {
                                       "type": "object", "required": ["id"],
                                       "properties": {"id": {"type": "string"}}}}}},
                "MetadataIndex": {"type": "object", "required": ["propertyName", "indexType"], "properties": {
                    "propertyName": {"type": "string"},
                    "indexType": {"type": "string", "enum": list(limits.METADATA_TYPES)}}},
            },
        },
    }
