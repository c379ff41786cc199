import { httpError } from './codec/http-errors.js';

/** A request's deadline; its AbortSignal is made only when someone asks for it. */
export class Deadline {
  private controller: AbortController | undefined;
  private reason: unknown;
  private expired = false;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.expired) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  expire(reason: unknown): void {
    this.expired = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}

/** Runs work against a deadline; past it the answer is 504 and the work is told to stop through its signal. */
export function withTimeout<T>(timeoutMs: number, work: (deadline: Deadline) => Promise<T>): Promise<T> {
  const deadline = new Deadline();
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => {
        const error = httpError('predictor_timeout', `the request did not finish within ${timeoutMs} ms`);
        deadline.expire(error);
        reject(error);
      },
      Math.max(0, timeoutMs),
    );
    const settle = (finish: () => void): void => {
      clearTimeout(timer);
      finish();
    };
    Promise.resolve()
      .then(() => work(deadline))
      .then(
        (value) => settle(() => resolve(value)),
        (error: unknown) => settle(() => reject(error)),
      );
  });
}
