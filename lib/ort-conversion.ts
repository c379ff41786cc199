/**
 * ONNX → ORT format (onnxruntime's flatbuffer model, which a session can run from the caller's bytes in place): one
 * definition for the runtime's tools (async, in process) and the constructs (at synth, which is synchronous: a
 * child node process). Both use the onnxruntime-node this package depends on, the one the images copy, since an
 * ORT-format model is tied to the onnxruntime version that wrote it. No Python is needed.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type Ort from 'onnxruntime-node';

/** The flatbuffer file identifier of an ORT-format model, at byte 4. */
const ORT_FILE_IDENTIFIER = 'ORTM';

/** Whether these bytes (a model's first 8 are enough) are an ORT-format model. */
export function isOrtFormat(bytes: Uint8Array): boolean {
  if (bytes.length < 8) return false;
  for (let i = 0; i < ORT_FILE_IDENTIFIER.length; i++) {
    if (bytes[4 + i] !== ORT_FILE_IDENTIFIER.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * The session options that write the ORT file. `extended` optimizations are saved: portable across CPUs (the layout
 * transforms `all` adds are specific to the converting machine's instruction set, so they are left to the runtime).
 */
export function ortConversionOptions(ortPath: string): {
  graphOptimizationLevel: 'extended';
  optimizedModelFilePath: string;
  extra: { session: { save_model_format: 'ORT' } };
} {
  return {
    graphOptimizationLevel: 'extended',
    optimizedModelFilePath: ortPath,
    extra: { session: { save_model_format: 'ORT' } },
  };
}

/** Converts in this process (the benchmark, tests, tools). */
export async function convertToOrtFormat(onnxPath: string, ortPath: string): Promise<void> {
  const module = (await import('onnxruntime-node')) as typeof Ort & { default?: typeof Ort };
  const ort = module.default ?? module;
  const session = await ort.InferenceSession.create(onnxPath, ortConversionOptions(ortPath));
  await session.release();
}

/** The child's script: load onnxruntime-node from the path given, convert, exit 0; any failure on stderr, exit 1. */
const CHILD_SCRIPT = `
const [entry, onnxPath, options] = process.argv.slice(1);
try {
  const module = await import(entry);
  const ort = module.default ?? module;
  const session = await ort.InferenceSession.create(onnxPath, JSON.parse(options));
  await session.release();
} catch (error) {
  process.stderr.write(String(error?.message ?? error));
  process.exit(1);
}
`;

/** Why a synth-time conversion failed: the engine is missing, or the model is not one it can convert. */
export class OrtConversionError extends Error {
  override readonly name = 'OrtConversionError';
}

const require = createRequire(import.meta.url);

/** onnxruntime-node's entry file and version, as installed beside this package. */
function onnxRuntimeNode(): { entry: string; version: string } {
  let entry: string;
  try {
    entry = require.resolve('onnxruntime-node');
  } catch (error) {
    throw new OrtConversionError(
      `onnxruntime-node, which converts the model to ORT format, is not installed (${(error as Error).message.split('\n')[0]}); install it (npm install onnxruntime-node) or drop ortFormat`,
    );
  }
  let dir = dirname(entry);
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  const { version } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string };
  return { entry, version };
}

/**
 * The ORT-format conversion of `onnxPath` (whose sha256 is `onnxSha256`), made once per model content and onnxruntime
 * version and kept in a cache
 * under the temp dir (so a re-synth gives the same file, hence the same asset hash, without converting again).
 * Synchronous, for `bind()`: a child node process does the conversion. Throws an OrtConversionError saying why when
 * it cannot be made.
 */
export function ortFormatOfSync(
  onnxPath: string,
  onnxSha256: string,
  cacheDir = join(tmpdir(), 'arclight-ort-cache'),
): string {
  const { entry, version } = onnxRuntimeNode();
  const ortPath = join(cacheDir, `${onnxSha256}-onnxruntime-${version}.ort`);
  if (existsSync(ortPath)) return ortPath;
  mkdirSync(cacheDir, { recursive: true });
  // onnxruntime picks the saved format from the extension too: the partial file keeps `.ort`.
  const partial = `${ortPath}.${process.pid}.part.ort`;
  try {
    execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        CHILD_SCRIPT,
        pathToFileURL(entry).href,
        onnxPath,
        JSON.stringify(ortConversionOptions(partial)),
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 1024 * 1024 },
    );
    renameSync(partial, ortPath);
  } catch (error) {
    rmSync(partial, { force: true });
    const stderr = String((error as { stderr?: Buffer }).stderr ?? '').trim();
    throw new OrtConversionError(
      `converting ${onnxPath} to ORT format with onnxruntime-node ${version} failed: ${stderr || (error as Error).message}`,
    );
  }
  return ortPath;
}
