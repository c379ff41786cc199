/**
 * The ONNX executor: owns one onnxruntime-node session, made from bytes in memory, and its metadata.
 */
import ort from 'onnxruntime-node';
import type { Datatype, Tensor, TensorInfo } from '../predictor.js';
import { StartupError } from './startup-error.js';
import { DATATYPE_OF, isTensorType } from './tensor-types.js';

export interface OnnxExecutorOptions {
  /** Threads onnxruntime uses inside one operator. @default onnxruntime's own choice (one per core) */
  readonly intraOpThreads?: number;
  /** Execution providers in order of preference. @default ['cpu'] */
  readonly executionProviders?: readonly string[];
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
  ) {}

  /** Creates a session from the model's bytes; a file that is not ONNX is refused with a clear error. */
  static async load(bytes: Uint8Array, source: string, options: OnnxExecutorOptions = {}): Promise<OnnxExecutor> {
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, {
        executionProviders: [...(options.executionProviders ?? ['cpu'])],
        graphOptimizationLevel: 'all',
        executionMode: 'sequential',
        interOpNumThreads: 1,
        ...(options.intraOpThreads === undefined ? {} : { intraOpNumThreads: options.intraOpThreads }),
      });
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

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** Wraps typed data in an onnxruntime tensor (no copy). */
export function toOrtTensor(tensor: Tensor): ort.Tensor {
  if (tensor instanceof ort.Tensor) return tensor;
  return new ort.Tensor(tensor.type, tensor.data as never, tensor.dims);
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
