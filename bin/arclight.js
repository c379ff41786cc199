#!/usr/bin/env node
// Registers tsx so the CLI and users' TypeScript predictors run without a build step.
import { register } from 'tsx/esm/api';

register();
await import('./arclight.ts');
