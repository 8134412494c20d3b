// One vitest configuration for the whole repo: unit tests live beside their modules
// (`*.test.ts`), end-to-end and cross-language tests under test/. Workspace packages are
// resolved to their TypeScript sources so tests never need a prior build.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  resolve: {
    alias: {
      "@kaon/proto": here("./proto/ts/index.ts"),
      "@kaon/sdk": here("./sdk-ts/src/index.ts"),
      "@kaon/core": here("./core/src/index.ts"),
    },
  },
  test: {
    include: ["core/src/**/*.test.ts", "sdk-ts/src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    // A real PostgreSQL for the storage tests (KAON_TEST_PG_URL); see test/support/postgres.ts.
    globalSetup: ["test/support/postgres.ts"],
  },
});
