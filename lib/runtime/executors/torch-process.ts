/**
 * One torch executor process (python/arclight_executor.py): found, started, and heard from until it has imported
 * torch. The interpreter is ARCLIGHT_PYTHON when set, else the first of `python3` and `/usr/bin/python3` that can
 * import torch; the program itself reports a failed `import torch`, so finding the interpreter costs no extra start.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../telemetry/logger.js';
import { StartupError } from '../startup-error.js';
import { FRAME, FrameReader, frameJson, type Frame } from './torch-protocol.js';

/** Interpreters tried, in order, when ARCLIGHT_PYTHON is not set. */
export const PYTHON_CANDIDATES = ['python3', '/usr/bin/python3'] as const;

export const NO_TORCH_MESSAGE = 'no Python with torch: set ARCLIGHT_PYTHON or install torch';

/** What the program says once torch is imported. */
export interface Hello {
  readonly torch: string;
  readonly python: string;
  readonly cuda: boolean;
}

/** A typed failure from the program: the request's fault (`input`), the model's, the load's, or no torch. */
export interface ExecutorFailure {
  readonly kind: 'input' | 'model' | 'load' | 'no_torch' | 'protocol';
  readonly message: string;
  readonly hint?: string | null;
}

/** The executor program: beside the bundle (`python/` copied into an image) or in the repository (from source). */
export function executorProgram(): string {
  for (const relative of ['./python/arclight_executor.py', '../../../python/arclight_executor.py']) {
    const path = fileURLToPath(new URL(relative, import.meta.url));
    if (existsSync(path)) return path;
  }
  throw new StartupError(
    'the torch executor program (python/arclight_executor.py) is missing',
    'Reinstall arclight; an image must copy python/ beside its bundle',
  );
}

/** The interpreter that worked, per candidate list: a restart does not try the others again. */
const resolved = new Map<string, string>();

/**
 * glibc malloc settings for the torch process, unless the environment sets its own. By default glibc hands the
 * memory of each freed activation back to the kernel (trim) and maps large ones afresh (mmap), so every run page-
 * faults its intermediate tensors in again: 14.8 ms a MobileNet-sized run on one thread here, 11.2 ms with these
 * (measured side by side, `torch.jit.load` + `inference_mode`, 300 runs). Costs at most the trim threshold in memory
 * kept for reuse. Ignored where the C library is not glibc.
 */
export const TORCH_MALLOC_DEFAULTS: Readonly<Record<string, string>> = {
  MALLOC_MMAP_THRESHOLD_: String(16 * 1024 * 1024),
  MALLOC_TRIM_THRESHOLD_: String(128 * 1024 * 1024),
};

export class TorchProcess {
  private readonly frames: Frame[] = [];
  private waiter: ((frame: Frame | undefined) => void) | undefined;
  private stderrTail = '';
  /** Called for each frame once the process is handed to an executor. */
  onFrame: ((frame: Frame) => void) | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    readonly child: ChildProcessWithoutNullStreams,
    readonly python: string,
    log: Logger | undefined,
  ) {
    const reader = new FrameReader((frame) => this.deliver(frame));
    child.stdout.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (error) {
        log?.error('torch executor sent a malformed frame; stopping it', { error: error as Error });
        child.kill('SIGKILL');
      }
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderrTail = (this.stderrTail + chunk).slice(-4000);
      for (const line of chunk.split('\n')) if (line.trim()) log?.warn('torch executor', { stderr: line });
    });
    // Writes to a process that died fail with EPIPE; the exit handler reports the death.
    child.stdin.on('error', () => undefined);
    this.exited = new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
    void this.exited.then(() => this.deliver(undefined));
  }

  /** The interpreter's process id. */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** The last lines the program wrote to stderr. */
  get stderr(): string {
    return this.stderrTail.trim();
  }

  /**
   * Starts the program under the first interpreter that imports torch; resolves once it has. No interpreter with
   * torch: a StartupError saying so (and what each candidate answered).
   */
  static async start(options: { readonly python?: string; readonly logger?: Logger } = {}): Promise<TorchProcess> {
    const program = executorProgram();
    const candidates = options.python ? [options.python] : [...PYTHON_CANDIDATES];
    const key = candidates.join('\0');
    const known = resolved.get(key);
    const attempts: string[] = [];
    for (const python of known ? [known, ...candidates.filter((c) => c !== known)] : candidates) {
      const outcome = await TorchProcess.tryStart(python, program, options.logger);
      if (outcome instanceof TorchProcess) {
        resolved.set(key, python);
        return outcome;
      }
      attempts.push(`${python}: ${outcome}`);
    }
    throw new StartupError(
      `${NO_TORCH_MESSAGE} (${attempts.join('; ')})`,
      options.python
        ? 'ARCLIGHT_PYTHON must name a Python that can import torch'
        : 'Install torch (pip install torch, or apt-get install python3-torch)',
    );
  }

  private static async tryStart(
    python: string,
    program: string,
    log: Logger | undefined,
  ): Promise<TorchProcess | string> {
    let child: ChildProcessWithoutNullStreams;
    try {
      child = spawn(python, [program], {
        stdio: 'pipe',
        // Read-only task roots (Lambda) cannot take __pycache__; user modules import without writing one.
        env: { ...TORCH_MALLOC_DEFAULTS, ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
      });
    } catch (error) {
      return (error as Error).message;
    }
    const spawnFailed = new Promise<string>((resolve) =>
      child.once('error', (error: NodeJS.ErrnoException) =>
        resolve(error.code === 'ENOENT' ? 'not found' : error.message),
      ),
    );
    const started = new TorchProcess(child, python, log);
    const first = await Promise.race([started.next(), spawnFailed]);
    if (typeof first === 'string') return first;
    if (first?.kind === FRAME.hello) {
      started.hello = frameJson<Hello>(first);
      return started;
    }
    const reason =
      first?.kind === FRAME.error ? frameJson<ExecutorFailure>(first).message : `exited at start: ${started.stderr}`;
    child.kill('SIGKILL');
    return reason;
  }

  /** What the program said at start. */
  hello: Hello | undefined;

  /** The next frame not handed to `onFrame`, or undefined once the process has exited. */
  next(): Promise<Frame | undefined> {
    const frame = this.frames.shift();
    if (frame) return Promise.resolve(frame);
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve(undefined);
    return new Promise((resolve) => (this.waiter = resolve));
  }

  send(frame: Buffer): void {
    this.child.stdin.write(frame);
  }

  /** Asks the program to exit (BYE, then end of input), killing it past `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const bye = Buffer.alloc(5);
    bye.writeUInt32LE(1, 0);
    bye.writeUInt8(FRAME.bye, 4);
    this.child.stdin.end(bye);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  private deliver(frame: Frame | undefined): void {
    if (frame && this.onFrame) {
      this.onFrame(frame);
      return;
    }
    const waiter = this.waiter;
    this.waiter = undefined;
    if (waiter) waiter(frame);
    else if (frame) this.frames.push(frame);
  }
}
