/**
 * ArrayBuffers that belong to one request alone (a body the HTTP adapter read into memory of its own). Tensors
 * decoded from such a body are views into it, and the worker pool may move the whole buffer to a worker thread
 * instead of copying it. Anything not marked here (Node's shared Buffer pool above all) is never moved.
 *
 * Large bodies' memory is reused: a buffer that went to a worker comes back with the worker's answer and holds a
 * later request's body. Fresh memory costs a page fault per 4 KiB on first touch (dear in a Firecracker VM), and a
 * fresh MiB per request keeps V8's external-memory accounting, and so its GC, busy.
 */
const owned = new WeakSet<ArrayBufferLike>();

/** Marks a buffer as the sole property of the request being served. */
export function markOwned(buffer: ArrayBuffer): void {
  owned.add(buffer);
}

/** Whether a buffer may be moved (detached) once its request is done with it. */
export function isOwned(buffer: ArrayBufferLike): boolean {
  return owned.has(buffer);
}

/** Bodies below this are cheap to allocate: their memory is not kept for reuse. */
const REUSE_MIN_BYTES = 64 * 1024;
/** Sizes are rounded up to this, so bodies of nearly the same size share buffers. */
const SIZE_STEP = 64 * 1024;
/** Most memory kept for reuse, all sizes together. */
const REUSE_MAX_BYTES = 64 * 1024 * 1024;

const free = new Map<number, ArrayBuffer[]>();
let freeBytes = 0;

/**
 * Memory of its own (marked owned) for a body of `byteLength` bytes: a reused buffer when one of its size class is
 * free, else a fresh one. The buffer may be longer than asked; view the part needed.
 */
export function ownedBuffer(byteLength: number): ArrayBuffer {
  if (byteLength < REUSE_MIN_BYTES) {
    const memory = new ArrayBuffer(byteLength);
    owned.add(memory);
    return memory;
  }
  const size = Math.ceil(byteLength / SIZE_STEP) * SIZE_STEP;
  const reused = free.get(size)?.pop();
  if (reused) {
    freeBytes -= size;
    return reused;
  }
  const memory = new ArrayBuffer(size);
  owned.add(memory);
  return memory;
}

/**
 * Takes back a buffer nothing else references (one a worker thread moved back after its run) for later bodies.
 * Buffers of no size class, or past the reuse budget, are left to the GC.
 */
export function reclaim(buffer: ArrayBuffer): void {
  const size = buffer.byteLength;
  if (size < REUSE_MIN_BYTES || size % SIZE_STEP !== 0 || freeBytes + size > REUSE_MAX_BYTES) return;
  owned.add(buffer);
  const list = free.get(size);
  if (list) list.push(buffer);
  else free.set(size, [buffer]);
  freeBytes += size;
}

/** Bytes kept for reuse now (tests, metrics). */
export function reusableBytes(): number {
  return freeBytes;
}
