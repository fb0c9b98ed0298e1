#!/usr/bin/env node
// Gzipped size of the production bundle in frontend/dist.
//
//   node scripts/bundle-size.mjs [out.json]      (run `npm run build` first)
//
// Prints one line per asset and the totals; with an argument, also writes them
// as JSON to that path (for the benchmark report). "initial" counts what the
// browser loads for the first page: index.html plus the files it references
// and the chunks those statically import; the rest are lazy chunks.

import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { constants, gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const dist = resolve(here, "..", "dist");
const outPath = process.argv[2];

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

let files;
try {
  files = walk(dist).filter((p) => /\.(js|mjs|css|html|svg|json|wasm)$/.test(p));
} catch {
  console.error(`No build found at ${dist}: run \`npm run build\` first.`);
  process.exit(1);
}
if (files.length === 0) {
  console.error(`No assets in ${dist}: run \`npm run build\` first.`);
  process.exit(1);
}

const assets = files
  .map((p) => {
    const buf = readFileSync(p);
    return {
      file: relative(dist, p).split("\\").join("/"),
      bytes: buf.length,
      gzip_bytes: gzipSync(buf, { level: constants.Z_BEST_COMPRESSION }).length,
    };
  })
  .sort((a, b) => b.gzip_bytes - a.gzip_bytes);

// Initial load: index.html, what it references, and static imports of those.
const byName = new Map(assets.map((a) => [a.file, a]));
const initial = new Set(["index.html"]);
const queue = ["index.html"];
while (queue.length) {
  const file = queue.shift();
  const text = readFileSync(join(dist, file), "utf8");
  const base = dirname(file);
  const refs = [
    ...text.matchAll(/(?:src|href)="([^"]+)"/g),
    ...(file.endsWith(".js") ? text.matchAll(/\bimport\s*(?:[\w${}\s,*]+from\s*)?["']([^"']+)["']/g) : []),
  ].map((m) => m[1]);
  for (const ref of refs) {
    if (/^(https?:|data:|#)/.test(ref)) continue;
    const target = join(base, ref).split("\\").join("/").replace(/^\.\//, "");
    if (byName.has(target) && !initial.has(target)) {
      initial.add(target);
      queue.push(target);
    }
  }
}

const sum = (list, key) => list.reduce((s, a) => s + a[key], 0);
const kb = (n) => (n / 1024).toFixed(1).padStart(8) + " KiB";
const js = assets.filter((a) => /\.m?js$/.test(a.file));
const css = assets.filter((a) => a.file.endsWith(".css"));
const initialAssets = assets.filter((a) => initial.has(a.file));

const report = {
  generated_at: new Date().toISOString(),
  dist: "frontend/dist",
  compression: "gzip -9",
  total_bytes: sum(assets, "bytes"),
  total_gzip_bytes: sum(assets, "gzip_bytes"),
  js_gzip_bytes: sum(js, "gzip_bytes"),
  css_gzip_bytes: sum(css, "gzip_bytes"),
  initial_gzip_bytes: sum(initialAssets, "gzip_bytes"),
  initial_files: initialAssets.map((a) => a.file),
  assets,
};

console.log("gzip      raw         file");
for (const a of assets) {
  console.log(`${kb(a.gzip_bytes)} ${kb(a.bytes)}  ${a.file}${initial.has(a.file) ? "" : "  (lazy)"}`);
}
console.log(`${kb(report.total_gzip_bytes)} ${kb(report.total_bytes)}  total`);
console.log(`${kb(report.initial_gzip_bytes)}               initial load (first page)`);

if (outPath) {
  const target = resolve(process.cwd(), outPath);
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, JSON.stringify(report, null, 2) + "\n");
  console.log(`wrote ${target}`);
}
