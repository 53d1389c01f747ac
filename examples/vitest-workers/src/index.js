// A small Worker that keeps documents in Vectorize: add, search (with a metadata filter), read,
// delete, and index statistics. It uses env.VECTORIZE exactly as on Cloudflare; the tests run it
// against vz (see ../README.md).

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const ids = () => (url.searchParams.get("ids") || "").split(",").filter(Boolean);
    try {
      if (url.pathname === "/docs" && request.method === "POST") {
        // [{id, values, metadata: {title, category}}]
        return Response.json(await env.VECTORIZE.upsert(await request.json()));
      }
      if (url.pathname === "/docs" && request.method === "GET") {
        const docs = await env.VECTORIZE.getByIds(ids());
        return Response.json(docs.map((d) => ({ id: d.id, ...d.metadata })));
      }
      if (url.pathname === "/docs" && request.method === "DELETE") {
        return Response.json(await env.VECTORIZE.deleteByIds(ids()));
      }
      if (url.pathname === "/search" && request.method === "POST") {
        const { vector, category, topK = 3 } = await request.json();
        const { matches } = await env.VECTORIZE.query(vector, {
          topK,
          returnMetadata: "all",
          ...(category ? { filter: { category } } : {}),
        });
        return Response.json(matches.map((m) => ({ id: m.id, score: m.score, title: m.metadata.title })));
      }
      if (url.pathname === "/stats" && request.method === "GET") {
        const { dimensions, vectorCount } = await env.VECTORIZE.describe();
        return Response.json({ dimensions, vectorCount });
      }
      return new Response("not found", { status: 404 });
    } catch (e) {
      // The binding's errors read like "VECTOR_QUERY_ERROR (code = 40006): ...".
      return Response.json({ error: e.message }, { status: 400 });
    }
  },
};
