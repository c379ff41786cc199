/**
 * The executor worker thread: holds one onnxruntime session made from the model bytes the pool shares, and runs
 * the pool's jobs one at a time. onnxruntime-node's `run` blocks the thread it runs on; here that is this thread,
 * never the server's. Tensors come and go as transferable typed arrays.
 */
import { readdirSync, readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import type { Tensor } from '../../predictor.js';
import {
  bytesPerElement,
  isNumericData,
  tensorDataFromBytes,
  type NumericTensorData,
  type NumericTensorType,
} from '../codec/tensor-types.js';
import { ModelRunError, OnnxExecutor } from './onnx-executor.js';
import { StartupError } from '../startup-error.js';
import type { SlabTensor, WorkerInit, WorkerJob, WorkerMessage, WorkerReply } from './worker-pool.js';

const port = parentPort;
if (!port) throw new Error('onnx-worker must run in a worker thread');
const init = workerData as WorkerInit;

/** How much lower than the server's thread inference runs (nice +10): see yieldToServerThread. */
const WORKER_NICENESS = 10;

/**
 * Inference yields the CPU to the server's thread: when the workers saturate every core, health checks (SageMaker
 * kills a container whose /ping is late) and request intake still run at once. Linux keeps niceness per thread and
 * onnxruntime's intra-op threads, created with the session, inherit it. Elsewhere, or if refused, a no-op.
 */
function yieldToServerThread(niceness = WORKER_NICENESS): void {
  try {
    const threadId = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isSafeInteger(threadId) && threadId > 0) setPriority(threadId, niceness);
  } catch {
    // Not Linux, or not permitted: inference runs at the server's priority.
  }
}

/** This process's threads (Linux), to find those onnxruntime started during the load. */
function threadIds(): Set<number> {
  try {
    return new Set(readdirSync('/proc/self/task').map(Number));
  } catch {
    return new Set();
  }
}

/**
 * After a reload's low-priority load: this thread and the intra-op threads onnxruntime started meanwhile go back to
 * the workers' niceness. Lowering niceness needs CAP_SYS_NICE (root here; not in a default container): refused, they
 * keep serving at the low priority, which still ranks them below the server's thread, and the next reload's loading
 * then competes with them as an equal instead of from below.
 */
function restoreAfterLoad(before: ReadonlySet<number>): void {
  const self = Number(readlinkSync('/proc/thread-self').split('/').pop());
  for (const id of threadIds()) {
    if (id !== self && before.has(id)) continue;
    try {
      setPriority(id, WORKER_NICENESS);
    } catch {
      return;
    }
  }
}

/** Loads the session with the providers asked for; falls back to CPU when `cpu` is listed and another fails. */
async function load(): Promise<{ executor: OnnxExecutor; providers: readonly string[]; fallback?: string }> {
  const model = typeof init.model === 'string' ? init.model : new Uint8Array(init.model).slice();
  // No spin-waiting: an idle intra-op thread would burn a core the other workers and the server's thread need.
  const options = { intraOpThreads: init.intraOpThreads, spinWait: false };
  const wanted = init.executionProviders;
  try {
    return {
      executor: await OnnxExecutor.load(model, init.source, { ...options, executionProviders: wanted }),
      providers: wanted,
    };
  } catch (error) {
    const accelerated = wanted.filter((p) => p !== 'cpu');
    if (accelerated.length === 0) throw error;
    // Was it the provider or the model? A CPU-only session tells.
    let cpu: OnnxExecutor;
    try {
      cpu = await OnnxExecutor.load(model, init.source, { ...options, executionProviders: ['cpu'] });
    } catch {
      throw error;
    }
    const reason = rootMessage(error);
    if (!wanted.includes('cpu')) {
      await cpu.release();
      throw new StartupError(
        `execution provider ${accelerated.join(',')} cannot be loaded on this machine: ${reason}`,
        `Run on a host with the provider's libraries (a GPU instance with CUDA 12 and cuDNN 9), or add cpu to ARCLIGHT_EXECUTION_PROVIDERS (e.g. ${[...accelerated, 'cpu'].join(',')}) to fall back`,
      );
    }
    return { executor: cpu, providers: ['cpu'], fallback: `${accelerated.join(',')} failed to load: ${reason}` };
  }
}

function rootMessage(error: unknown): string {
  let current: unknown = error;
  while (current instanceof Error && current.cause !== undefined) current = current.cause;
  const message = current instanceof Error ? current.message : String(current);
  return message.split('\n', 1)[0]!.trim();
}

function post(reply: WorkerReply, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(reply, transfer);
}

yieldToServerThread(init.loadNiceness);
try {
  const threadsBefore = threadIds();
  const { executor, providers, fallback } = await load();
  const firstRunMs = init.warmUp ? await executor.warmUp() : undefined;
  if (init.loadNiceness !== undefined) restoreAfterLoad(threadsBefore);
  port.on('message', (message: WorkerMessage) => {
    if (message.kind === 'exit') process.exit(message.code);
    else if (message.kind === 'slab') slabMemory.set(message.id, message.memory);
    else void run(executor, message);
  });
  post({
    kind: 'ready',
    inputs: executor.inputs,
    outputs: executor.outputs,
    providers,
    ...(fallback === undefined ? {} : { fallback }),
    ...(firstRunMs === undefined ? {} : { firstRunMs }),
  });
} catch (error) {
  post({
    kind: 'failed',
    message: error instanceof Error ? error.message : String(error),
    ...(error instanceof StartupError && error.hint !== undefined ? { hint: error.hint } : {}),
  });
}

/** The body slabs' memory by slab id (body-slabs.ts), told by the pool before any job refers to it. */
const slabMemory = new Map<number, SharedArrayBuffer>();
/** Per input, memory of this thread's own that slab feeds are copied into, run after run (onnxruntime refuses shared memory). */
const slabCopies = new Map<string, ArrayBuffer>();

/** A slab feed's bytes, copied into this thread's memory for that input. */
function fromSlab(name: string, tensor: SlabTensor): Tensor {
  const { slab, byteOffset, byteLength } = tensor.inSlab;
  const memory = slabMemory.get(slab);
  if (!memory || byteOffset + byteLength > memory.byteLength) throw new Error(`body slab ${slab} is not known here`);
  let copy = slabCopies.get(name);
  if (!copy || copy.byteLength < byteLength) slabCopies.set(name, (copy = new ArrayBuffer(byteLength)));
  const bytes = Buffer.from(copy, 0, byteLength);
  // fill copies with memcpy; TypedArray.set from shared memory copies word by word (a third as fast, measured).
  if (byteLength > 0) bytes.fill(Buffer.from(memory, byteOffset, byteLength));
  const type = tensor.type as NumericTensorType;
  return {
    type,
    data: tensorDataFromBytes(bytes, type, byteLength / bytesPerElement(type)),
    dims: [...tensor.dims],
  } as Tensor;
}

function isSlabTensor(tensor: Tensor | SlabTensor): tensor is SlabTensor {
  return 'inSlab' in tensor;
}

async function run(executor: OnnxExecutor, job: WorkerJob): Promise<void> {
  try {
    const feeds: Record<string, Tensor> = {};
    const sent: Record<string, Tensor> = {};
    for (const [name, tensor] of Object.entries(job.feeds)) {
      if (isSlabTensor(tensor)) feeds[name] = fromSlab(name, tensor);
      else feeds[name] = sent[name] = tensor;
    }
    const results = await executor.run(feeds, job.outputNames);
    const outputs: Record<string, Tensor> = {};
    // The feeds' memory goes back too: the server reuses it for later request bodies (see owned-buffers.ts). Slab
    // feeds' copies stay: they are this thread's, for the next run.
    const reclaimed = feedBuffers(sent);
    const transfer: ArrayBuffer[] = [...reclaimed];
    for (const [name, tensor] of Object.entries(results)) {
      // A BYTES output's strings are copied (structured clone); typed arrays move.
      const data = isNumericData(tensor.data) ? owned(tensor.data) : [...tensor.data];
      if (isNumericData(data)) transfer.push(data.buffer as ArrayBuffer);
      outputs[name] = { type: tensor.type, data, dims: [...tensor.dims] } as Tensor;
    }
    post({ kind: 'result', id: job.id, outputs, reclaimed }, transfer);
  } catch (error) {
    post({
      kind: 'error',
      id: job.id,
      message: error instanceof Error ? error.message : String(error),
      modelRun: error instanceof ModelRunError,
    });
  }
}

/** The distinct ArrayBuffers under the numeric feeds (none is an output's: onnxruntime writes outputs anew). */
function feedBuffers(feeds: Readonly<Record<string, Tensor>>): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const tensor of Object.values(feeds)) {
    if (isNumericData(tensor.data) && tensor.data.buffer instanceof ArrayBuffer) buffers.add(tensor.data.buffer);
  }
  return [...buffers];
}

/** The data in a buffer of its own (transferable without detaching anything else). */
function owned<T extends NumericTensorData>(data: T): T {
  if (data.byteOffset === 0 && data.buffer.byteLength === data.byteLength && data.buffer instanceof ArrayBuffer)
    return data;
  return data.slice() as T;
}
