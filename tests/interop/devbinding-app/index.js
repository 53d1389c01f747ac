// Sample app Worker for vz's dev-binding end-to-end test: unchanged Vectorize code, run by
// `wrangler dev` with the vz shim standing in for the real binding.
//
// POST / with {"binding": "VECTORIZE", "method": "query", "args": [...], "typed": "f32"|"f64"}
// calls env[binding][method](...args) and answers {"ok": true, "result": ...} or
// {"ok": false, "error": "<the thrown message>"}. "typed" turns the query vector and every
// inserted/upserted vector's values into a Float32Array or Float64Array first, as real apps do.

const TYPED = { f32: Float32Array, f64: Float64Array };

function withTypedValues(method, args, Typed) {
  if (method === "query") return [Typed.from(args[0]), ...args.slice(1)];
  if (method === "insert" || method === "upsert") {
    return [args[0].map((v) => ({ ...v, values: Typed.from(v.values) })), ...args.slice(1)];
  }
  return args;
}

export default {
  async fetch(request, env) {
    if (request.method !== "POST") {
      return Response.json({ ok: true, bindings: Object.keys(env) });
    }
    const { binding = "VECTORIZE", method, args = [], typed } = await request.json();
    const index = env[binding];
    const callArgs = typed ? withTypedValues(method, args, TYPED[typed]) : args;
    try {
      const result = await index[method](...callArgs);
      return Response.json({ ok: true, result });
    } catch (e) {
      return Response.json({ ok: false, error: String(e && e.message) });
    }
  },
};
