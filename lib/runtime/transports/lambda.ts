/**
 * The Lambda entry the image bundles: the runtime configured from the deployed contract's env vars.
 *
 * The generated entry awaits `lambdaEntryFromEnv` at its top level, so the model is fetched, its session created and
 * warmed up inside Lambda's init phase (at full CPU, before the first request; under provisioned concurrency before
 * the sandbox is frozen), and the bundle's `handler` exists only then. The wait is bounded by the init window: a load
 * that cannot finish in it continues in the background and the first invocation waits for the rest, rather than Lambda
 * killing the init and starting it over. onnxruntime-node is imported only while the model's bytes arrive (the bundle
 * keeps it external and never imports it statically).
 */
import { ENV } from '../../contract.js';
import type { DefinedPredictor } from '../../predictor.js';
import { bootFromEnv } from '../boot.js';
import { createLambdaHandler, type LambdaHandler } from './lambda-adapter.js';
import { bootLambdaFromEnv } from '../variants/lambda-variants.js';

/**
 * Lambda's init windows, counted from the start of the sandbox: 10 s on demand; with provisioned concurrency or
 * SnapStart, 130 s or the function's timeout, whichever is higher (Arclight caps the timeout at 29 s).
 */
export const LAMBDA_INIT_WINDOW_MS = { onDemand: 10_000, provisioned: 130_000 } as const;

/** Kept back from the window for what runs before the bundle (extensions, the runtime client) and for finishing. */
export const INIT_WINDOW_MARGIN_MS = 1000;

/**
 * How long after the process started the entry may wait for the model: `ARCLIGHT_INIT_BUDGET_MS` when set, else
 * the init window of this sandbox's initialization type (`AWS_LAMBDA_INITIALIZATION_TYPE`) less the margin.
 */
export function initBudgetMs(env: NodeJS.ProcessEnv = process.env): number {
  const configured = Number(env[ENV.initBudgetMs]);
  if (env[ENV.initBudgetMs] && Number.isFinite(configured) && configured >= 0) return configured;
  const type = env['AWS_LAMBDA_INITIALIZATION_TYPE'];
  const window =
    type === 'provisioned-concurrency' || type === 'snap-start'
      ? LAMBDA_INIT_WINDOW_MS.provisioned
      : LAMBDA_INIT_WINDOW_MS.onDemand;
  return window - INIT_WINDOW_MARGIN_MS;
}

/**
 * The handler, once the model is loaded or the init budget is spent (whichever comes first). A failed load does not
 * fail the init: it is logged, and requests answer 503 `not_ready` while the runtime retries it.
 */
export async function lambdaEntryFromEnv(
  predictor?: DefinedPredictor<unknown>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<LambdaHandler> {
  // One runtime, or (with variants) one per production variant behind a split, and the shadow's copies.
  const { handler, started, log } = bootLambdaFromEnv(predictor, env);
  const budgetMs = initBudgetMs(env);
  const leftMs = Math.max(0, budgetMs - performance.now());
  let timer: NodeJS.Timeout | undefined;
  const spent = new Promise<'spent'>((resolve) => (timer = setTimeout(resolve, leftMs, 'spent')));
  const outcome = await Promise.race([started, spent]);
  clearTimeout(timer);
  if (outcome === 'spent') {
    log.warn('init budget spent before the model was ready: the load continues into the first invocation', {
      initBudgetMs: budgetMs,
      processMs: Math.round(performance.now()),
    });
  }
  return handler;
}

/**
 * The handler at once, the model's load under way (what the bundle exported before the init-phase wait; tests and
 * embedders that drive the wait themselves use it).
 */
export function lambdaHandlerFromEnv(predictor?: DefinedPredictor<unknown>): LambdaHandler {
  const { runtime, settings } = bootFromEnv(predictor);
  return createLambdaHandler(runtime, { maxBodyBytes: settings.maxBodyBytes });
}
