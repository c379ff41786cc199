/**
 * ArrayBuffers that belong to one request alone (a body the HTTP adapter read into memory of its own). Tensors
 * decoded from such a body are views into it, and the worker pool may move the whole buffer to a worker thread
 * instead of copying it. Anything not marked here (Node's shared Buffer pool above all) is never moved.
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
