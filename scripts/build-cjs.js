// The CommonJS build (dist/cjs/index.cjs), for the package's `require` condition: jest runs a CDK app's tests in its
// own module system, which cannot require() ES modules on Node.js 20 and 22. One file with the library's code;
// every dependency stays a require() of the installed package. Types: the ESM declarations, re-exported.
import { writeFileSync } from 'node:fs';
import { buildSync } from 'esbuild';

buildSync({
  entryPoints: ['dist/index.js'],
  outfile: 'dist/cjs/index.cjs',
  bundle: true,
  packages: 'external',
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: true,
  logLevel: 'warning',
  // The modules find their package's files from their own URL; in the bundle that is this file's.
  define: { 'import.meta.url': '__arclightModuleUrl' },
  banner: { js: "const __arclightModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
});
writeFileSync('dist/cjs/index.d.cts', "export * from '../index.js';\n");
