import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// The local stack serves dist/ at http://127.0.0.1:8000/ with the API under
// /api/v1 on the same origin. `npm run dev` proxies /api there so the dev
// server behaves the same (set OPEX_API_ORIGIN to point elsewhere).
const apiOrigin = process.env.OPEX_API_ORIGIN ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  // Relative asset URLs: the same build works at the site root (local stack,
  // CloudFront) and under a path prefix. Routing is hash-based, so no server
  // rewrite rule is needed for deep links.
  base: "./",
  server: {
    host: "127.0.0.1",
    port: 5173,
    proxy: { "/api": { target: apiOrigin, changeOrigin: false } },
  },
  build: {
    outDir: "dist",
    sourcemap: false,
    target: "es2022",
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
