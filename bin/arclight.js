#!/usr/bin/env node
// The CLI, compiled: `npm run build` writes dist/ (the published package carries it). A TypeScript predictor given
// to `serve` loads through tsx, which the CLI registers only then.
import { URL } from 'node:url';

const main = new URL('../dist/cli/main.js', import.meta.url);
try {
  await import(main.href);
} catch (error) {
  if (error?.code === 'ERR_MODULE_NOT_FOUND' && error.url === main.href) {
    process.stderr.write('arclight: error: dist/ is not built (run `npm run build` in this checkout)\n');
    process.exit(1);
  }
  throw error;
}
