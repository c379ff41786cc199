/**
 * The `fetch` scenario's model: a valid ONNX graph whose one large initializer makes it 256 MiB, generated once and
 * cached under the results folder. `y = Gather(table, index)`: every byte is a real weight onnxruntime must load,
 * yet a run reads one 4 KiB row, so the first prediction costs almost nothing beyond the session.
 */
import { existsSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeOnnxModel } from '../test/onnx-model-writer.js';

export const BIG_MODEL_ROWS = 65_536;
export const BIG_MODEL_COLUMNS = 1024;
/** The input a prediction sends: row 7 of the table. */
export const BIG_MODEL_INPUT = { name: 'index', type: 'int64', dims: [1] } as const;

/** Path of the cached model, generating it first when absent. */
export async function bigModel(outDir: string): Promise<string> {
  const dir = join(outDir, 'cache');
  const path = join(dir, `gather-${(BIG_MODEL_ROWS * BIG_MODEL_COLUMNS * 4) / 2 ** 20}mib.onnx`);
  if (existsSync(path)) return path;
  await mkdir(dir, { recursive: true });
  const table = new Float32Array(BIG_MODEL_ROWS * BIG_MODEL_COLUMNS);
  for (let i = 0; i < table.length; i++) table[i] = (i % 4093) / 4093;
  const bytes = writeOnnxModel({
    inputs: [{ name: 'index', type: 'int64', dims: [1] }],
    outputs: [{ name: 'row', type: 'float32', dims: [1, BIG_MODEL_COLUMNS] }],
    nodes: [{ op: 'Gather', inputs: ['table', 'index'], outputs: ['row'], attributes: { axis: { int: 0 } } }],
    initializers: [{ name: 'table', type: 'float32', dims: [BIG_MODEL_ROWS, BIG_MODEL_COLUMNS], data: table }],
    graphName: 'gather256',
  });
  await writeFile(`${path}.part`, bytes);
  await rename(`${path}.part`, path);
  return path;
}
