/**
 * Closed-loop load from autocannon's programmatic API, in this process, over loopback keep-alive connections: each
 * connection sends its next request when the previous answer has arrived, cycling through `requests`. An optional
 * `check` reads every answer's body, so a soak proves the answers right, not just 200.
 */
import autocannon from 'autocannon';

export interface LoadRequest {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Buffer;
  /** Says what is wrong with a 2xx answer's body, or undefined when it is right. */
  readonly check?: (body: string) => string | undefined;
}

export interface ClosedLoopOptions {
  readonly connections: number;
  /** Requests in all. */
  readonly amount: number;
  readonly requests: readonly LoadRequest[];
  /** A request unanswered after this counts as a timeout. @default 30 s */
  readonly timeoutS?: number;
}

export interface ClosedLoopResult {
  readonly amount: number;
  readonly ok: number;
  readonly non2xx: number;
  /** Connection errors and timeouts. */
  readonly errors: number;
  readonly timeouts: number;
  /** 2xx answers that failed their request's `check`. */
  readonly wrong: number;
  readonly firstWrong: string | undefined;
  readonly statusCodes: Readonly<Record<string, number>>;
  readonly durationS: number;
  readonly rps: number;
  readonly latencyMs: { readonly p50: number; readonly p99: number; readonly max: number };
}

export async function closedLoop(url: string, options: ClosedLoopOptions): Promise<ClosedLoopResult> {
  let wrong = 0;
  let firstWrong: string | undefined;
  const requests = options.requests.map((request): autocannon.Request => {
    const check = request.check;
    return {
      method: request.method,
      path: request.path,
      ...(request.headers ? { headers: { ...request.headers } } : {}),
      ...(request.body === undefined ? {} : { body: request.body }),
      ...(check
        ? {
            onResponse: (status: number, body: string) => {
              if (status < 200 || status >= 300) return;
              const problem = check(body);
              if (problem === undefined) return;
              wrong++;
              firstWrong ??= problem;
            },
          }
        : {}),
    };
  });
  const { result, durationS } = await run({
    url,
    connections: options.connections,
    amount: options.amount,
    timeout: options.timeoutS ?? 30,
    requests,
  });
  const statusCodes: Record<string, number> = {};
  for (const [code, stats] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = stats.count ?? 0;
  return {
    amount: options.amount,
    ok: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    wrong,
    firstWrong,
    statusCodes,
    durationS,
    rps: result['2xx'] / durationS,
    latencyMs: { p50: result.latency.p50, p99: result.latency.p99, max: result.latency.max },
  };
}

/**
 * Runs autocannon and times it from the start to the last answer: autocannon's own `duration` is only taken on its
 * once-a-second tick, which would understate the throughput of short runs by up to a second.
 */
function run(options: autocannon.Options): Promise<{ result: autocannon.Result; durationS: number }> {
  const started = performance.now();
  let lastAnswer = started;
  return new Promise((resolve, reject) => {
    const instance = autocannon(options, (error: Error | null, result: autocannon.Result) => {
      if (error) reject(error);
      else resolve({ result, durationS: (lastAnswer - started) / 1000 });
    });
    instance.on('response', () => (lastAnswer = performance.now()));
  });
}
