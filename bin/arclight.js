#!/usr/bin/env node
// The CLI, compiled (npm run build writes dist/). A TypeScript predictor given to `serve` loads through tsx, which
// the CLI registers only then.
await import('../dist/cli/main.js');
