/**
 * Live reload: looks under a versioned model prefix every `intervalMs` and lets the lifecycle swap to a new version
 * (model-lifecycle.ts `reload`). One look at a time: the next is scheduled only after the last finished, so a slow
 * fetch never stacks up reloads. The timer is unref'd: it never keeps a process alive.
 */
import type { ReloadOutcome } from './model-lifecycle.js';
import { asError, type Logger } from './telemetry/logger.js';

export interface Reloadable {
  reload(): Promise<ReloadOutcome>;
}

export class ModelReloader {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = false;

  constructor(
    private readonly target: Reloadable,
    private readonly intervalMs: number,
    private readonly log: Logger,
    /** Each look's outcome (tests, `arclight serve`'s status line). @default none */
    private readonly onOutcome?: (outcome: ReloadOutcome) => void,
  ) {}

  start(): void {
    if (this.stopped || this.timer) return;
    this.log.info('watching for new model versions', { intervalSeconds: this.intervalMs / 1000 });
    this.schedule();
  }

  /** Stops looking, and waits for a look under way to finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.look().finally(() => {
        this.running = undefined;
        this.schedule();
      });
    }, this.intervalMs);
    this.timer.unref();
  }

  private async look(): Promise<void> {
    try {
      const outcome = await this.target.reload();
      this.onOutcome?.(outcome);
    } catch (error) {
      // reload() reports its own failures; anything else is a bug, logged, and the next look still comes.
      this.log.error('model version check failed', { error: asError(error) });
    }
  }
}
