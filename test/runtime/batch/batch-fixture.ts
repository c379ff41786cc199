/**
 * What the batch tests share: the bucket `data` on s3rver with reads of what a job wrote there, digits inputs as JSON
 * Lines, and the BatchJob Lambda handler on a real digits runtime that counts the requests it serves.
 */
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { startEmbeddedS3, type EmbeddedS3 } from '../../../lib/cli/local/embedded-s3.js';
import { createBatchHandler, type BatchHandler } from '../../../lib/runtime/batch/step-functions-handler.js';
import { createS3Client } from '../../../lib/runtime/model-store/model-store.js';
import type { Runtime } from '../../../lib/runtime/runtime.js';
import { DIGITS_ONNX, DIGITS_PREDICTOR, loadDigitsExpected, loadTestPredictor, startRuntime } from '../../helpers.js';

/** The bucket the inputs and the job's output live in. */
export const DATA_BUCKET = 'data';

/** A valid digits request as one JSON line: image `index` (wrapping around) as 0–16 pixels. */
export function digitsLine(index: number): string {
  const images = loadDigitsExpected().images;
  return JSON.stringify({ pixels: images[index % images.length]!.map((v) => Math.round(v * 16)) });
}

/** The JSON values of a JSON Lines body, blank lines skipped; none for no body. */
export function jsonLines<T>(body: string | undefined): T[] {
  return (body ?? '')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}

/** s3rver holding DATA_BUCKET, and reads of its objects (each through a client of its own, as a job's steps are). */
export interface DataBucket {
  readonly s3: EmbeddedS3;
  /** The object's body; rejects when there is none. */
  readonly text: (key: string) => Promise<string>;
  /** The object's body, undefined when there is none. */
  readonly textIfAny: (key: string) => Promise<string | undefined>;
  readonly exists: (key: string) => Promise<boolean>;
  /** The keys under `prefix` (one page). */
  readonly list: (prefix: string) => Promise<string[]>;
  readonly close: () => Promise<void>;
}

export async function startDataBucket(): Promise<DataBucket> {
  const s3 = await startEmbeddedS3([DATA_BUCKET]);
  async function withClient<T>(use: (client: S3Client) => Promise<T>): Promise<T> {
    const client = createS3Client(s3.env);
    try {
      return await use(client);
    } finally {
      client.destroy();
    }
  }
  const text = (key: string): Promise<string> =>
    withClient(async (client) =>
      (await client.send(new GetObjectCommand({ Bucket: DATA_BUCKET, Key: key }))).Body!.transformToString(),
    );
  return {
    s3,
    text,
    textIfAny: (key) => text(key).catch(() => undefined),
    exists: (key) =>
      withClient((client) => client.send(new HeadObjectCommand({ Bucket: DATA_BUCKET, Key: key }))).then(
        () => true,
        () => false,
      ),
    list: (prefix) =>
      withClient(async (client) => {
        const page = await client.send(new ListObjectsV2Command({ Bucket: DATA_BUCKET, Prefix: prefix }));
        return (page.Contents ?? []).map((o) => o.Key!);
      }),
    close: () => s3.close(),
  };
}

/** The BatchJob Lambda handler over DATA_BUCKET on the digits runtime; `requests` counts what the runtime served. */
export interface BatchHandlerFixture extends DataBucket {
  readonly runtime: Runtime;
  readonly handler: BatchHandler;
  /** Requests the runtime has handled; tests set it to 0 before the step they count. */
  requests: number;
}

export async function startBatchHandler(): Promise<BatchHandlerFixture> {
  const data = await startDataBucket();
  const runtime = await startRuntime({ modelUri: DIGITS_ONNX, predictor: await loadTestPredictor(DIGITS_PREDICTOR) });
  let requests = 0;
  const handle = runtime.handle.bind(runtime);
  runtime.handle = (request, options) => {
    requests += 1;
    return handle(request, options);
  };
  return {
    ...data,
    runtime,
    handler: createBatchHandler(runtime, data.s3.env),
    get requests() {
      return requests;
    },
    set requests(count: number) {
      requests = count;
    },
    close: async () => {
      await runtime.close();
      await data.close();
    },
  };
}
