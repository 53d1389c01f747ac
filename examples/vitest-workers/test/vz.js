// Test helpers that talk to vz serve itself (not through the binding): create an index, and start
// from a clean one. The address comes from vz's globalSetup, through vitest's provide/inject.
import { inject } from "vitest";

const ACCOUNT = "vz-local"; // vz serve accepts any account id

async function post(path, body) {
  const res = await fetch(`${inject("vzApiBase")}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const envelope = await res.json();
  if (!envelope.success) throw new Error(`${path}: ${JSON.stringify(envelope.errors)}`);
  return envelope.result;
}

// Deletes the index `name` (and any whose name starts with it: the reset call takes a prefix; it is
// vz only) and creates it afresh, with metadata indexes {property: "string" | "number" | "boolean"}.
export async function freshIndex(name, { dimensions = 3, metric = "cosine", metadata = {} } = {}) {
  await post("/vz/reset", { prefix: name });
  const indexes = `/accounts/${ACCOUNT}/vectorize/v2/indexes`;
  await post(indexes, { name, config: { dimensions, metric } });
  for (const [propertyName, indexType] of Object.entries(metadata)) {
    await post(`${indexes}/${name}/metadata_index/create`, { propertyName, indexType });
  }
}
