// Drives the official `cloudflare` TypeScript SDK for tests/test_server_tssdk.py.
//
// Reads one JSON request per line on stdin and answers one JSON line on stdout:
//   {"op": "indexes.insert", "args": ["docs", {"body": {"$body": "blob", "text": "..."}}]}
//   -> {"ok": true, "result": ...} or {"ok": false, "status": 400, "errors": [...], "name": "BadRequestError"}
// `op` is a method path under client.vectorize; `account_id` is added to the params object (the
// last argument). A body {"$body": "string"|"blob"|"buffer", "text": NDJSON} becomes that kind of
// value. Two ops are loops over SDK calls: "indexes.list" collects every page of the index list,
// and "listVectorsLoop" follows listVectors' cursor until isTruncated is false.
//
// Environment: VZ_API (base URL, .../client/v4), VZ_TOKEN, VZ_ACCOUNT.
import { createInterface } from "node:readline";
import Cloudflare from "cloudflare";

const client = new Cloudflare({ apiToken: process.env.VZ_TOKEN, baseURL: process.env.VZ_API, maxRetries: 0 });
const account_id = process.env.VZ_ACCOUNT;

function body(spec) {
  if (spec.$body === "string") return spec.text;
  if (spec.$body === "blob") return new Blob([spec.text], { type: "application/x-ndjson" });
  if (spec.$body === "buffer") return Buffer.from(spec.text, "utf8");
  throw new Error(`unknown body kind ${spec.$body}`);
}

function resolve(op) {
  const parts = op.split(".");
  let owner = client.vectorize;
  for (const p of parts.slice(0, -1)) owner = owner[p];
  const fn = owner[parts.at(-1)];
  if (typeof fn !== "function") throw new Error(`no SDK method vectorize.${op}`);
  return fn.bind(owner);
}

async function run({ op, args }) {
  const params = { ...(args.at(-1) || {}), account_id };
  if (params.body && params.body.$body) params.body = body(params.body);
  const head = args.slice(0, -1);
  if (op === "indexes.list") {
    const items = [];
    for await (const index of client.vectorize.indexes.list(params)) items.push(index);
    return items;
  }
  if (op === "listVectorsLoop") {
    const pages = [];
    let cursor;
    for (;;) {
      const page = await client.vectorize.indexes.listVectors(head[0], { ...params, ...(cursor ? { cursor } : {}) });
      pages.push(page);
      if (!page.isTruncated) return pages;
      cursor = page.nextCursor;
    }
  }
  return resolve(op)(...head, params);
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  let answer;
  try {
    answer = { ok: true, result: (await run(JSON.parse(line))) ?? null };
  } catch (e) {
    answer = { ok: false, name: e.constructor.name, status: e.status ?? null, errors: e.errors ?? null,
               message: e.message };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
