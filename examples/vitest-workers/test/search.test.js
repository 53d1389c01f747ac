// Queries through the Worker, against the index "example-search" (env.VECTORIZE). This file owns
// that index: it creates it once and the tests only read it.
import { env } from "cloudflare:test";
import { beforeAll, expect, it } from "vitest";

import worker from "../src/index.js";
import { freshIndex } from "./vz.js";

const DOCS = [
  { id: "moby", values: [1, 0, 0], metadata: { title: "Moby-Dick", category: "books" } },
  { id: "alien", values: [0.9, 0.1, 0], metadata: { title: "Alien", category: "films" } },
  { id: "dune", values: [0.8, 0.2, 0.1], metadata: { title: "Dune", category: "books" } },
  { id: "heat", values: [0, 1, 0], metadata: { title: "Heat", category: "films" } },
];

async function call(method, path, body) {
  const init = body === undefined ? { method } : { method, body: JSON.stringify(body) };
  const res = await worker.fetch(new Request(`https://example.com${path}`, init), env);
  return { status: res.status, body: await res.json() };
}

beforeAll(async () => {
  await freshIndex("example-search", { metadata: { category: "string" } }); // filterable, as on Cloudflare
  const { status, body } = await call("POST", "/docs", DOCS);
  expect(status).toBe(200);
  expect(body).toEqual({ mutationId: expect.any(String) });
});

it("finds the nearest documents", async () => {
  const { body } = await call("POST", "/search", { vector: [1, 0, 0] });
  expect(body.map((m) => m.id)).toEqual(["moby", "alien", "dune"]);
  expect(body[0]).toEqual({ id: "moby", score: 1, title: "Moby-Dick" });
});

it("filters on metadata", async () => {
  const { body } = await call("POST", "/search", { vector: [1, 0, 0], category: "films" });
  expect(body.map((m) => m.id)).toEqual(["alien", "heat"]);
});

it("describes the index", async () => {
  expect((await call("GET", "/stats")).body).toEqual({ dimensions: 3, vectorCount: 4 });
});

it("reports the binding's error for a vector of the wrong size", async () => {
  const { status, body } = await call("POST", "/search", { vector: [1, 0] });
  expect(status).toBe(400);
  expect(body.error).toBe(
    "VECTOR_QUERY_ERROR (code = 40006): invalid query vector, expected 3 dimensions, and got 2 dimensions",
  );
});

it("rejects through the binding (wrap the call: a service binding returns an RPC promise)", async () => {
  // Not `expect(env.VECTORIZE.query(...)).rejects`: workerd's RPC promise is also callable, and
  // vitest would leave its rejection unhandled. The real binding returns a plain Promise.
  await expect(async () => env.VECTORIZE.query([1, 0], { topK: 1 })).rejects.toThrow(
    "VECTOR_QUERY_ERROR (code = 40006)",
  );
});
