/**
 * The Lambda function around a GPU BatchJob's SageMaker batch transform (a small zip bundle: it never loads the
 * model). `{"action":"plan","input","output","rerun"}` plans the attempt (a rerun writes the failed records as the
 * transform's input); `{"action":"split","input","output","attempt","startedAt","transformError"?}` splits the
 * transform's output into results/, failures.jsonl, summary.json and `_SUCCESS` (transform-split.ts).
 */
import { createS3Client } from '../model-store/model-store.js';
import { BatchJobError } from './batch-job-error.js';
import type { BatchSummary } from './batch-layout.js';
import { BatchStore } from './batch-store.js';
import { planTransform, splitTransformOutput, type TransformPlan } from './transform-split.js';

export type TransformBatchEvent =
  | { readonly action: 'plan'; readonly input: string; readonly output: string; readonly rerun: boolean }
  | {
      readonly action: 'split';
      readonly input: string;
      readonly output: string;
      readonly attempt: number;
      readonly startedAt: string;
      /** The transform task's error (`{Error, Cause}`) when it failed; null or absent otherwise. */
      readonly transformError?: { readonly Error?: string; readonly Cause?: string } | null;
    };

export function createTransformBatchHandler(
  env: NodeJS.ProcessEnv = process.env,
): (event: TransformBatchEvent) => Promise<TransformPlan | BatchSummary> {
  const client = createS3Client(env);
  return async (event) => {
    const input = BatchStore.fromS3(event.input, client);
    const output = BatchStore.fromS3(event.output, client);
    if (event.action === 'plan') return planTransform(input, output, event.rerun);
    if (event.action === 'split') {
      const error = event.transformError;
      return splitTransformOutput({
        input,
        output,
        attempt: event.attempt,
        startedAt: new Date(event.startedAt),
        ...(error ? { transformError: [error.Error, error.Cause].filter(Boolean).join(': ') } : {}),
      });
    }
    throw new BatchJobError(`unknown transform batch event: ${JSON.stringify(event).slice(0, 200)}`);
  };
}

let handle: ReturnType<typeof createTransformBatchHandler> | undefined;

/** The bundle's entry (`index.handler`). */
export const handler = (event: TransformBatchEvent): Promise<TransformPlan | BatchSummary> => {
  handle ??= createTransformBatchHandler();
  return handle(event);
};
