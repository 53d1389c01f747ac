// Writes through the Worker, against its own index "example-mutations": this file runs in parallel
// with search.test.js, so it uses another binding (env.VECTORIZE_MUTATIONS, written by
// `vz dev-binding ... VECTORIZE_MUTATIONS=example-mutations`) in place of env.VECTORIZE, and each
// test starts from a fresh index.
import { env } from "cloudflare:test";
import { beforeEach, expect, it } from "vitest";

import worker from "../src/index.js";
import { freshIndex } from "./vz.js";

const ENV = { ...env, VECTORIZE: env.VECTORIZE_MUTATIONS };

async function call(method, path, body) {
  const init = body === undefined ? { method } : { method, body: JSON.stringify(body) };
  const res = await worker.fetch(new Request(`https://example.com${path}`, init), ENV);
  return { status: res.status, body: await res.json() };
}

beforeEach(async () => {
  await freshIndex("example-mutations");
});

it("upserts, reads back and replaces documents", async () => {
  await call("POST", "/docs", [
    { id: "a", values: [1, 0, 0], metadata: { title: "A", category: "x" } },
    { id: "b", values: [0, 1, 0], metadata: { title: "B", category: "y" } },
  ]);
  expect((await call("GET", "/docs?ids=b,a,missing")).body).toEqual([
    { id: "b", title: "B", category: "y" },
    { id: "a", title: "A", category: "x" },
  ]);
  await call("POST", "/docs", [{ id: "a", values: [0, 0, 1], metadata: { title: "A2" } }]);
  expect((await call("GET", "/docs?ids=a")).body).toEqual([{ id: "a", title: "A2" }]);
  expect((await call("GET", "/stats")).body).toEqual({ dimensions: 3, vectorCount: 2 });
});

it("deletes documents", async () => {
  await call("POST", "/docs", [{ id: "a", values: [1, 0, 0], metadata: { title: "A" } }]);
  const { body } = await call("DELETE", "/docs?ids=a,missing");
  expect(body).toEqual({ mutationId: expect.any(String) });
  expect((await call("GET", "/docs?ids=a")).body).toEqual([]);
  expect((await call("GET", "/stats")).body).toEqual({ dimensions: 3, vectorCount: 0 });
});

it("starts from an empty index", async () => {
  expect((await call("GET", "/stats")).body).toEqual({ dimensions: 3, vectorCount: 0 });
});
