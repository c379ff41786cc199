import { readFile } from 'node:fs/promises';
import type { Config } from '../predictor.js';
import { UsageError } from './fail.js';

/** `--config` (serve, batch run): inline JSON or `@file.json`, a JSON object. */
export async function parseConfigOption(value: string): Promise<Config> {
  let text = value;
  if (value.startsWith('@')) {
    text = await readFile(value.slice(1), 'utf8').catch((error: Error) => {
      throw new UsageError(`--config file ${value.slice(1)} cannot be read: ${error.message}`);
    });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new UsageError(
      `--config is not valid JSON: ${(error as Error).message}`,
      'Pass a JSON object, or @file.json',
    );
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new UsageError('--config must be a JSON object');
  }
  return parsed as Config;
}
