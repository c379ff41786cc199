/**
 * The ONNX executor: owns one onnxruntime-node session, made from bytes in memory, and its metadata.
 * onnxruntime-node is imported on first use, not at module load: a cold start begins the model fetch first and
 * loads the native runtime while the bytes arrive (`importOnnxRuntime`), so neither waits for the other.
 */
import type ort from 'onnxruntime-node';
import type { Datatype, Tensor, TensorInfo } from '../../predictor.js';
import { ORT_BYTES_IN_PLACE, isOrtFormat } from './ort-format.js';
import { StartupError } from '../startup-error.js';
import { DATATYPE_OF, isTensorType } from '../codec/tensor-types.js';
import { timedWarmUp } from './executor.js';

/** The session options every executor uses (benchmarks build their raw baselines from the same). */
export function onnxSessionOptions(options: OnnxExecutorOptions = {}): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [...(options.executionProviders ?? ['cpu'])],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    interOpNumThreads: 1,
    ...(options.intraOpThreads === undefined ? {} : { intraOpNumThreads: options.intraOpThreads }),
    ...(options.spinWait === false
      ? { extra: { session: sessionConfig({ 'session.intra_op.allow_spinning': '0' }) } }
      : {}),
  };
}

/** The options with more `session.x.y` config entries beside those they carry (spin-waiting's among them). */
function withSessionConfig(
  options: ort.InferenceSession.SessionOptions,
  entries: Readonly<Record<string, string>>,
): ort.InferenceSession.SessionOptions {
  const extra = (options.extra ?? {}) as { session?: Record<string, string> };
  return { ...options, extra: { ...extra, session: { ...extra.session, ...sessionConfig(entries) } } };
}

export interface OnnxExecutorOptions {
  /** Threads onnxruntime uses inside one operator. @default onnxruntime's own choice (one per core) */
  readonly intraOpThreads?: number;
  /** Execution providers in order of preference. @default ['cpu'] */
  readonly executionProviders?: readonly string[];
  /**
   * Whether idle intra-op threads spin-wait for the next operator (`session.intra_op.allow_spinning`). Off, a
   * session of 2 threads costs about the CPU of one (measured on MobileNet: 2.3 vs 4.1–4.5 ms CPU per run) and
   * leaves the cores to other sessions and the server's thread. @default onnxruntime's own (spinning)
   */
  readonly spinWait?: boolean;
}

type Ort = typeof ort;

/** The variable onnxruntime's native library reads to skip its telemetry (a device id and event files). */
export const ORT_TELEMETRY_ENV = 'ORT_DISABLE_TELEMETRY';

/**
 * Turns onnxruntime's telemetry off for this process unless the environment already decides: left on, every process
 * writes `$HOME/.cache/Microsoft/DeveloperTools/.onnxruntime/{deviceid,onnxruntime.db}`, `$TMPDIR/.ses` and a
 * `mat-debug-<pid>.log` (about 10 ms of a cold start, and files on a read-only or shared disk). The native library
 * reads the real environment when it loads: this must run on the main thread (a worker's `process.env` is a copy)
 * before onnxruntime-node is first imported, which is why this module calls it as it loads.
 */
export function disableOnnxRuntimeTelemetry(env: NodeJS.ProcessEnv = process.env): void {
  env[ORT_TELEMETRY_ENV] ??= '1';
}
disableOnnxRuntimeTelemetry();

/** The module once imported: `toOrtTensor` needs it synchronously on the hot path. */
let loadedOrt: Ort | undefined;
let importing: Promise<{ readonly ort: Ort; readonly importMs: number }> | undefined;

/**
 * Imports onnxruntime-node once; resolves with the module and how long this process spent importing it
 * (the same figure on every call). Call it early to overlap the import with other work.
 */
export function importOnnxRuntime(): Promise<{ readonly ort: Ort; readonly importMs: number }> {
  importing ??= (async () => {
    const started = performance.now();
    const module = (await import('onnxruntime-node')) as Ort & { default?: Ort };
    loadedOrt = module.default ?? module;
    return { ort: loadedOrt, importMs: performance.now() - started };
  })();
  return importing;
}

/** Raised when the model cannot run on a request's tensors. */
export class ModelRunError extends Error {
  override readonly name = 'ModelRunError';
}

export class OnnxExecutor {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly inputs: readonly TensorInfo[],
    readonly outputs: readonly TensorInfo[],
    /** An ORT-format model's bytes, which the session reads in place: held as long as the session lives. */
    private readonly modelBytes?: Uint8Array,
  ) {}

  /** Whether the session runs from the model's bytes in place (an ORT-format model): no copy of the weights. */
  get bytesInPlace(): boolean {
    return this.modelBytes !== undefined;
  }

  /**
   * Creates a session from the model's bytes, or from the path of a model file (a model too large for memory);
   * a file that is not ONNX is refused with a clear error.
   */
  static async load(
    model: Uint8Array | string,
    source: string,
    options: OnnxExecutorOptions = {},
  ): Promise<OnnxExecutor> {
    const { ort } = await importOnnxRuntime();
    let session: ort.InferenceSession;
    const inPlace = typeof model !== 'string' && isOrtFormat(model);
    const sessionOptions = inPlace
      ? withSessionConfig(onnxSessionOptions(options), ORT_BYTES_IN_PLACE)
      : onnxSessionOptions(options);
    try {
      session =
        typeof model === 'string'
          ? await ort.InferenceSession.create(model, sessionOptions)
          : await ort.InferenceSession.create(model, sessionOptions);
    } catch (error) {
      throw new StartupError(
        `model ${source} is not a valid ONNX model: ${firstLine(error)}`,
        'Export it with torch.onnx.export or LightningModule.to_onnx',
        { cause: error },
      );
    }
    return new OnnxExecutor(
      session,
      session.inputMetadata.map((m) => describeValue(m, 'input', source)),
      session.outputMetadata.map((m) => describeValue(m, 'output', source)),
      inPlace ? model : undefined,
    );
  }

  /** Runs the model; tensors may be onnxruntime's or plain `{ type, data, dims }` objects. */
  async run(feeds: Readonly<Record<string, Tensor>>, outputNames?: readonly string[]): Promise<Record<string, Tensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, tensor] of Object.entries(feeds)) ortFeeds[name] = toOrtTensor(tensor);
    try {
      const results = outputNames
        ? await this.session.run(ortFeeds, [...outputNames])
        : await this.session.run(ortFeeds);
      return results as unknown as Record<string, Tensor>;
    } catch (error) {
      throw new ModelRunError(firstLine(error), { cause: error });
    }
  }

  /**
   * One run on zero-filled inputs (dynamic dimensions as 1), so the first request does not pay for onnxruntime's
   * first-run allocations. Resolves with its duration, or undefined when the model refuses such inputs.
   */
  warmUp(): Promise<number | undefined> {
    return timedWarmUp(this.inputs, (feeds) => this.run(feeds));
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** `session.x.y` config keys as onnxruntime-node's `extra` option nests them (`{ session: { 'x.y': … } }`). */
function sessionConfig(entries: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(entries).map(([key, value]) => [key.replace(/^session\./, ''), value]));
}

/** Wraps typed data in an onnxruntime tensor (no copy). */
export function toOrtTensor(tensor: Tensor): ort.Tensor {
  if (!loadedOrt) throw new Error('onnxruntime-node is not loaded yet: await importOnnxRuntime() first');
  if (tensor instanceof loadedOrt.Tensor) return tensor;
  // onnxruntime refuses shared memory ("Invalid argument"): such data (a body slab's, say) runs from a copy.
  const data =
    ArrayBuffer.isView(tensor.data) && tensor.data.buffer instanceof SharedArrayBuffer
      ? tensor.data.slice()
      : tensor.data;
  return new loadedOrt.Tensor(tensor.type, data as never, tensor.dims);
}

function describeValue(meta: ort.InferenceSession.ValueMetadata, role: string, source: string): TensorInfo {
  if (!meta.isTensor || !isTensorType(meta.type)) {
    throw new StartupError(
      `model ${source} has ${role} '${meta.name}' of type ${meta.isTensor ? meta.type : 'non-tensor'}, which Arclight cannot serve`,
      'Serve models whose inputs and outputs are bool, integer or float tensors',
    );
  }
  const datatype: Datatype = DATATYPE_OF[meta.type];
  return {
    name: meta.name,
    datatype,
    shape: meta.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1)),
    dimNames: meta.shape.map((d) => (typeof d === 'string' ? d : null)),
  };
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n', 1)[0]!.trim();
}
