/** A problem that stops the runtime from starting, told in one line with how to fix it. */
export class StartupError extends Error {
  override readonly name = 'StartupError';
  constructor(
    message: string,
    /** What to do about it. */
    readonly hint?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }

  /** `message (hint)` on one line. */
  oneLine(): string {
    if (this.hint === undefined) return this.message;
    return `${this.message}${/[.!?]$/.test(this.message) ? '' : '.'} ${this.hint}`;
  }
}
