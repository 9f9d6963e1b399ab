import type { Logger } from 'pino';

/** How long refusals are summed up before one warning says how many there were. */
export const REFUSAL_SUMMARY_MS = 10_000;

/**
 * Requests a model refused to take on (queue full, a wait longer than allowed, the in-flight bytes, a timeout in the
 * queue) as warnings an operator finds without an access log: the first of a burst at once, with its reason, and then
 * one line per period while refusals go on, with their count by code — never one line per request, which under the
 * overload that causes them would add to it.
 */
export class RefusalLog {
  private counts = new Map<string, { count: number; example: string }>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly label: string,
    private readonly periodMs = REFUSAL_SUMMARY_MS,
  ) {}

  note(code: string, given: string): void {
    // The client's message names the version already: the line names it once.
    const message = given.startsWith(`${this.label}: `) ? given.slice(this.label.length + 2) : given;
    if (!this.timer) {
      this.logger.warn({ code }, `${this.label} refused a request: ${message}; further refusals are summed up every ${this.periodMs / 1000} s`);
      this.timer = setTimeout(() => this.flush(), this.periodMs).unref();
      return;
    }
    const counted = this.counts.get(code);
    if (counted) counted.count++;
    else this.counts.set(code, { count: 1, example: message });
  }

  /** Says what was refused since the last line; the period goes on while refusals do. */
  private flush(): void {
    this.timer = undefined;
    if (this.counts.size === 0) return;
    const refused = Object.fromEntries([...this.counts].map(([code, { count }]) => [code, count]));
    const total = Object.values(refused).reduce((sum, count) => sum + count, 0);
    const detail = [...this.counts].map(([code, { count, example }]) => `${code} ${count} (e.g. ${example})`).join('; ');
    this.counts = new Map();
    this.logger.warn({ refused }, `${this.label} refused ${total} more request(s) in the last ${this.periodMs / 1000} s: ${detail}`);
    this.timer = setTimeout(() => this.flush(), this.periodMs).unref();
  }
}
