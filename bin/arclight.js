#!/usr/bin/env node
// Registers tsx so the CLI and users' TypeScript predictors run without a build step. Both hooks: a predictor in a
// package without "type": "module" (a CommonJS package, the default) is loaded through require's hooks.
import { register as registerCjs } from 'tsx/cjs/api';
import { register } from 'tsx/esm/api';

registerCjs();
register();
await import('./arclight.ts');
