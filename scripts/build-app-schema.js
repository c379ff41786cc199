// The JSON Schema of arclight.yaml (schema/arclight.schema.json), generated from the zod schema the CLI checks the
// file with, so editors complete and check exactly what `arclight synth` accepts.
import { mkdirSync, writeFileSync } from 'node:fs';
import { appFileJsonSchema } from '../dist/app-file/schema.js';

mkdirSync('schema', { recursive: true });
writeFileSync('schema/arclight.schema.json', `${JSON.stringify(appFileJsonSchema(), null, 2)}\n`);
