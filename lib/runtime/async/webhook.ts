/**
 * Completion webhooks: the worker POSTs a job's notification to the URL its submission named
 * (`Arclight-Callback-Url`), signed with HMAC-SHA256 under the API's webhook secret so a receiver can tell it came
 * from the API and was not replayed later (`Arclight-Signature: t=<unix>,v1=<hex>` over `"<t>.<body>"`, Stripe's
 * scheme). Each delivery has a timeout; a network error, a timeout, 408, 429 or 5xx is retried a bounded number of
 * times with backoff; redirects are not followed. A delivery that fails for good is logged and counted and never
 * fails the job: the status stays readable at `statusUrl`.
 */
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { WEBHOOK_HEADERS } from '../../contract.js';
import type { JobNotification, JobNotifier } from './job-notification.js';
import type { JobRecord } from './job.js';

/** The signature header's value for `body` signed at `timestamp` (unix seconds). */
export function webhookSignature(secret: string, body: string, timestamp: number): string {
  const digest = createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
  return `t=${timestamp},v1=${digest}`;
}

/**
 * Whether `header` signs `body` under `secret`, within `toleranceSeconds` of `now` (a replayed old delivery fails).
 * For receivers: pass the raw body, as received.
 */
export function verifyWebhookSignature(
  secret: string,
  body: string | Buffer,
  header: string | undefined,
  options: { readonly toleranceSeconds?: number; readonly now?: Date } = {},
): boolean {
  const fields = new Map(
    (header ?? '').split(',').map((part) => {
      const at = part.indexOf('=');
      return [part.slice(0, at).trim(), part.slice(at + 1).trim()] as const;
    }),
  );
  const timestamp = Number(fields.get('t'));
  const signature = fields.get('v1') ?? '';
  if (!Number.isInteger(timestamp) || !/^[0-9a-f]{64}$/.test(signature)) return false;
  const now = Math.floor((options.now ?? new Date()).getTime() / 1000);
  if (Math.abs(now - timestamp) > (options.toleranceSeconds ?? 300)) return false;
  const expected = createHmac('sha256', secret)
    .update(`${timestamp}.`)
    .update(typeof body === 'string' ? Buffer.from(body) : body)
    .digest();
  return timingSafeEqual(expected, Buffer.from(signature, 'hex'));
}

export interface WebhookNotifierOptions {
  /** The signing key (loaded once, on the first delivery). */
  readonly secret: () => Promise<string>;
  /** How long one delivery may take. @default 5000 */
  readonly timeoutMs?: number;
  /** Deliveries before the webhook is given up. @default 3 */
  readonly attempts?: number;
  /** Wait before the n-th retry (1-based). @default 500 ms × 2^(n-1) */
  readonly backoffMs?: (retry: number) => number;
  readonly now?: () => Date;
  /** Where deliveries are logged. */
  readonly log?: (message: string, fields: Record<string, unknown>) => void;
  /** Called once per webhook given up (counted as a metric). */
  readonly onFailure?: (notification: JobNotification, reason: string) => void;
}

/** How one webhook ended. */
export interface WebhookDelivery {
  readonly delivered: boolean;
  readonly attempts: number;
  /** The last answer's status, or why there was none. */
  readonly last: number | string;
}

export class WebhookNotifier implements JobNotifier {
  private secret: Promise<string> | undefined;

  constructor(private readonly options: WebhookNotifierOptions) {}

  async notify(notification: JobNotification, record: JobRecord): Promise<void> {
    if (!record.callbackUrl) return;
    await this.deliver(record.callbackUrl, notification);
  }

  /** POSTs `notification` to `url` until it is accepted (2xx) or the attempts are spent; never throws. */
  async deliver(url: string, notification: JobNotification): Promise<WebhookDelivery> {
    const attempts = Math.max(1, this.options.attempts ?? 3);
    const body = JSON.stringify(notification);
    const deliveryId = randomUUID();
    let last: number | string = 'not sent';
    let secret: string;
    try {
      secret = await this.signingKey();
    } catch (error) {
      return this.gaveUp(notification, url, 0, `the webhook secret could not be read: ${String(error)}`);
    }
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (attempt > 1) await sleep(this.options.backoffMs?.(attempt - 1) ?? 500 * 2 ** (attempt - 2));
      last = await this.post(url, body, secret, notification.id, deliveryId);
      if (typeof last === 'number' && last >= 200 && last < 300) {
        this.options.log?.('async webhook delivered', { id: notification.id, status: last, attempt });
        return { delivered: true, attempts: attempt, last };
      }
      if (!retryable(last)) return this.gaveUp(notification, url, attempt, describe(last));
    }
    return this.gaveUp(notification, url, attempts, describe(last));
  }

  private signingKey(): Promise<string> {
    this.secret ??= this.options.secret().catch((error: unknown) => {
      this.secret = undefined; // read again on the next job
      throw error;
    });
    return this.secret;
  }

  /** One delivery: the answer's status, or why there was none. */
  private async post(
    url: string,
    body: string,
    secret: string,
    jobId: string,
    deliveryId: string,
  ): Promise<number | string> {
    const timestamp = Math.floor((this.options.now?.() ?? new Date()).getTime() / 1000);
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'arclight-async-webhook',
          [WEBHOOK_HEADERS.signature]: webhookSignature(secret, body, timestamp),
          [WEBHOOK_HEADERS.jobId]: jobId,
          [WEBHOOK_HEADERS.deliveryId]: deliveryId,
        },
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 5000),
      });
      // The answer's body is not read: drop it so the socket is freed.
      await response.body?.cancel().catch(() => undefined);
      return response.status;
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause?.code;
      return (error as Error).name === 'TimeoutError'
        ? 'timed out'
        : `${(error as Error).message}${cause ? ` (${cause})` : ''}`;
    }
  }

  private gaveUp(notification: JobNotification, url: string, attempts: number, reason: string): WebhookDelivery {
    this.options.log?.('async webhook failed', { id: notification.id, url: redacted(url), attempts, reason });
    this.options.onFailure?.(notification, reason);
    return { delivered: false, attempts, last: reason };
  }
}

/** Worth another try: no answer, a timeout, 408, 429, or a server error. */
function retryable(last: number | string): boolean {
  return typeof last === 'string' || last === 408 || last === 429 || last >= 500;
}

function describe(last: number | string): string {
  return typeof last === 'number' ? `the receiver answered ${last}` : last;
}

/** The URL without its query (which may carry a receiver's token) for the logs. */
function redacted(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.origin}${parsed.pathname}${parsed.search ? '?…' : ''}`;
  } catch {
    return '(not a URL)';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
