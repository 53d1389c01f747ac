import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// Written by: vz dev-binding VECTORIZE=example-search VECTORIZE_MUTATIONS=example-mutations --vitest --out vz-vectorize
import { vzGlobalSetup, vzMiniflare } from "./vz-vectorize/vitest.mjs";

export default defineConfig({
  plugins: [
    cloudflareTest(({ inject }) => ({
      wrangler: { configPath: "./wrangler.test.jsonc" }, // no `vectorize` entry in there
      verbose: false, // else every error the shim throws on purpose is logged as "uncaught"
      miniflare: vzMiniflare(inject),
    })),
  ],
  test: {
    globalSetup: [vzGlobalSetup], // vz serve --port 0 --ephemeral for the whole run
  },
});
