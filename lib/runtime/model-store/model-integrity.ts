/** The model's integrity check: the one message a sha256 mismatch gives, wherever the bytes came from. */
import { StartupError } from '../startup-error.js';

/** Normalises an expected sha256 (any case) or refuses one that is not 64 hex digits. */
export function normalizeSha256(expected: string | undefined): string | undefined {
  if (expected === undefined) return undefined;
  const lower = expected.toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(lower)) {
    throw new StartupError(`expected sha256 '${expected}' is not 64 hex digits`);
  }
  return lower;
}

/** Throws when `got` differs from `expected` (both lower-case hex); does nothing without an expectation. */
export function checkSha256(source: string, expected: string | undefined, got: string): void {
  if (expected === undefined || got === expected) return;
  throw new StartupError(
    `model ${source} failed its integrity check: expected sha256 ${expected}, got ${got}`,
    'The object was changed or corrupted after deployment; redeploy, or upload the model that was deployed',
  );
}
