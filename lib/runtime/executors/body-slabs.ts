/**
 * Request bodies in shared memory the inference workers already hold, and how many bodies are read at once.
 *
 * A POST takes a slab before its body is read; with every slab taken it waits, first come first served, with its
 * upload unread: TCP back-pressure holds the bytes in the client's socket instead of this process holding them while
 * the request queues for a worker. A plain body of declared length is then read straight into the slab's memory, its
 * tensors go to a worker as (slab, offset, length), and the worker copies them into memory of its own that it reuses
 * run after run. No ArrayBuffer is made, moved or freed per request.
 *
 * Why it matters for speed, not only memory: bodies queued in memory outlived the young generation's scavenges, and
 * ArrayBuffers moved between threads come back as new objects; V8 frees such external memory only in mark-compacts,
 * which it starts whenever external memory grows by 64 MiB. On MobileNet (588 KiB bodies, 2 workers, concurrency
 * 16) that was a mark-compact every ~35 requests: 0.15 ms of the server's thread and ~0.6 ms of GC threads per
 * request. With slabs (and a small young generation, CONTAINER_NODE_OPTIONS) there are none.
 *
 * A slab is reused only once nothing refers to it: the request that holds it (until its answer is written) and
 * every worker job whose tensors lie in it (until the worker has answered).
 */

/** Slab memory grows in these steps, so bodies of nearly one size share a slab without regrowing it. */
const SLAB_STEP_BYTES = 1024 * 1024;

/** One slab: shared memory, and who still refers to it. */
export class BodySlab {
  private refs = 0;
  private memoryNow = new SharedArrayBuffer(0);

  constructor(
    /** Stable for the slab's life; the workers know its memory under this id. */
    readonly id: number,
    private readonly owner: BodySlabs,
  ) {}

  /** The memory (empty until a body is read into the slab). */
  get memory(): SharedArrayBuffer {
    return this.memoryNow;
  }

  /** Whether nothing refers to the slab (it may take another body). */
  get free(): boolean {
    return this.refs === 0;
  }

  /**
   * `byteLength` bytes of the slab's memory to read a body into, grown first if too small (only its one holder refers
   * to it then: no worker job does).
   */
  bytes(byteLength: number): Buffer {
    if (this.refs !== 1) throw new Error(`body slab ${this.id} is shared; its memory cannot be rewritten`);
    if (this.memoryNow.byteLength < byteLength) {
      this.memoryNow = new SharedArrayBuffer(Math.ceil(byteLength / SLAB_STEP_BYTES) * SLAB_STEP_BYTES);
      this.owner.grew(this);
    }
    return Buffer.from(this.memoryNow, 0, byteLength);
  }

  /** One more holder: the slab is not reused until each holder has released it. */
  retain(): void {
    this.refs++;
  }

  /** One holder is done with the slab; the last one hands it to the next waiting request. */
  release(): void {
    if (this.refs === 0) throw new Error(`body slab ${this.id} released more often than retained`);
    this.refs--;
    if (this.refs === 0) this.owner.freed(this);
  }
}

export interface AcquireOptions {
  /** Give up (resolve undefined) after this long. @default never */
  readonly timeoutMs?: number;
  /** Give up (resolve undefined) when this aborts: the client went away. */
  readonly signal?: AbortSignal;
}

export class BodySlabs {
  private readonly slabs: BodySlab[] = [];
  private readonly waiters: ((slab: BodySlab | undefined) => void)[] = [];
  private readonly memoryListeners = new Set<(slab: BodySlab) => void>();
  private readonly byMemory = new Map<SharedArrayBuffer, BodySlab>();

  constructor(
    /** Slabs: bodies in memory at once. */
    readonly count: number,
  ) {
    if (!Number.isSafeInteger(count) || count < 1) {
      throw new RangeError(`body slabs: count must be a positive integer, got ${count}`);
    }
    for (let id = 0; id < count; id++) this.slabs.push(new BodySlab(id, this));
  }

  /** Every slab, for a worker that starts now and must know their memory. */
  get all(): readonly BodySlab[] {
    return this.slabs;
  }

  /** Requests waiting for a slab, their uploads still in their sockets. */
  get waiting(): number {
    return this.waiters.length;
  }

  /**
   * A slab, retained once for the caller; waits (first come, first served) while every slab is taken. Resolves
   * undefined when the wait times out or is aborted.
   */
  acquire(options: AcquireOptions = {}): Promise<BodySlab | undefined> {
    const free = this.tryAcquire();
    if (free) return Promise.resolve(free);
    if (options.signal?.aborted) return Promise.resolve(undefined);
    const waiters = this.waiters;
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const take = (slab: BodySlab | undefined): void => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', giveUp);
        resolve(slab);
      };
      function giveUp(): void {
        const index = waiters.indexOf(take);
        if (index >= 0) waiters.splice(index, 1);
        take(undefined);
      }
      if (options.timeoutMs !== undefined) timer = setTimeout(giveUp, Math.max(0, options.timeoutMs));
      options.signal?.addEventListener('abort', giveUp, { once: true });
      waiters.push(take);
    });
  }

  /** A free slab, retained once for the caller, when one is free and nobody waits; else undefined (no waiting). */
  tryAcquire(): BodySlab | undefined {
    if (this.waiters.length > 0) return undefined;
    const slab = this.slabs.find((s) => s.free);
    return slab ? held(slab) : undefined;
  }

  /** The slab whose memory this is, if it is one of ours (a tensor decoded from a body lies in it). */
  slabOf(memory: ArrayBufferLike): BodySlab | undefined {
    return memory instanceof SharedArrayBuffer ? this.byMemory.get(memory) : undefined;
  }

  /** Calls `listener` whenever a slab gets new memory (workers must learn it before a job refers to it). */
  onMemory(listener: (slab: BodySlab) => void): () => void {
    this.memoryListeners.add(listener);
    return () => this.memoryListeners.delete(listener);
  }

  /** @internal A slab's last holder released it: the first waiter takes it. */
  freed(slab: BodySlab): void {
    const next = this.waiters.shift();
    if (next) next(held(slab));
  }

  /** @internal A slab's memory was replaced by a larger one. */
  grew(slab: BodySlab): void {
    for (const [memory, owner] of this.byMemory) if (owner === slab) this.byMemory.delete(memory);
    this.byMemory.set(slab.memory, slab);
    for (const listener of this.memoryListeners) listener(slab);
  }
}

function held(slab: BodySlab): BodySlab {
  slab.retain();
  return slab;
}

/** A feed's place in a slab: the worker reads the tensor's bytes from the slab memory it was told of under `slab`. */
export interface SlabRef {
  readonly slab: number;
  readonly byteOffset: number;
  readonly byteLength: number;
}
