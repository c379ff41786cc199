/**
 * The memory a Lambda sandbox decodes base64 bodies into, request after request. A fresh buffer for each body cost
 * more than the decode itself: glibc hands out an allocation this large (MobileNet: 588 KiB) as newly mapped pages
 * and unmaps it when freed, so every request paid the kernel for fresh, zeroed pages (Node 22, 588 KiB: 75–200 µs
 * into fresh memory against 27 µs into reused memory).
 *
 * A body may sit here only while no code but the runtime's own can see it (`Runtime.bodiesStayInside`), and the
 * memory serves the next body only after its request was answered with success: after a timeout or any other
 * failure a run may still hold views into it, so it is left to them and a new buffer is made.
 */

/** Growth step: a body a little larger than the last does not reallocate each time. */
const STEP_BYTES = 2 ** 20;

export class BodyMemory {
  private buffer: ArrayBuffer | undefined;
  private taken = false;

  /** Whether a body occupies the memory now. */
  get inUse(): boolean {
    return this.taken;
  }

  /**
   * `length` bytes that start `offset` bytes into the memory (an offset aligns what follows a header), or undefined
   * while another body holds it (a second invocation in flight in the same process).
   */
  take(offset: number, length: number): Buffer | undefined {
    if (this.taken) return undefined;
    const needed = offset + length;
    if (!this.buffer || this.buffer.byteLength < needed) {
      // Not zero-filled: every byte a body uses is written by its decode.
      this.buffer = Buffer.allocUnsafeSlow(Math.ceil(needed / STEP_BYTES) * STEP_BYTES).buffer;
    }
    this.taken = true;
    return Buffer.from(this.buffer, offset, length);
  }

  /** The body's request was answered with success and nothing holds the body: the memory takes the next one. */
  release(): void {
    this.taken = false;
  }

  /** The body's request ended otherwise: whatever still holds the body keeps this buffer, and the next gets a new one. */
  abandon(): void {
    this.buffer = undefined;
    this.taken = false;
  }
}
