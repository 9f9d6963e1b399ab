/**
 * Progress of a batch job on stderr: a cli-progress bar on a terminal, a plain line every few
 * seconds otherwise (logs, CI), and the summary at the end.
 */
import { SingleBar } from 'cli-progress';

export type ProgressMode = 'auto' | 'bar' | 'lines' | 'none';

export interface ProgressOptions {
  /** Records in the input. */
  total: number;
  /** Records already in the output when the job started. */
  alreadyDone: number;
  mode?: ProgressMode;
  stream?: NodeJS.WriteStream;
  /** Between plain lines. */
  intervalMs?: number;
  label?: string;
  /** Why the job is not moving right now (Redis unreachable), shown with the progress; undefined while it runs. */
  stalled?: () => string | undefined;
}

function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export class JobProgress {
  private done = 0;
  private failed = 0;
  private readonly started = performance.now();
  private bar?: SingleBar;
  private timer?: NodeJS.Timeout;
  private readonly mode: Exclude<ProgressMode, 'auto'>;
  private readonly stream: NodeJS.WriteStream;

  constructor(private readonly options: ProgressOptions) {
    this.stream = options.stream ?? process.stderr;
    const mode = options.mode ?? 'auto';
    this.mode = mode === 'auto' ? (this.stream.isTTY ? 'bar' : 'lines') : mode;
  }

  start(): this {
    const { total, alreadyDone } = this.options;
    if (this.mode === 'bar') {
      this.bar = new SingleBar({
        stream: this.stream,
        format: `${this.options.label ?? 'batch'} {bar} {percentage}% | {value}/{total} records | {rate} records/s | {failed} failed | ETA {eta_formatted}{stalled}`,
        hideCursor: true,
        etaBuffer: 50,
        fps: 5,
      });
      this.bar.start(total, alreadyDone, { rate: '0', failed: 0, stalled: '' });
    } else if (this.mode === 'lines') {
      this.timer = setInterval(() => this.stream.write(`${this.line()}\n`), this.options.intervalMs ?? 2000);
      this.timer.unref();
    }
    return this;
  }

  /** Records completed now, of which `failed` with an error. */
  add(records: number, failed: number): void {
    this.done += records;
    this.failed += failed;
    this.bar?.update(this.options.alreadyDone + this.done, { rate: this.rate().toFixed(1), failed: this.failed });
  }

  /** The bar shows what `stalled` says now; lines ask it each time. */
  stalledChanged(): void {
    const stalled = this.options.stalled?.();
    this.bar?.update({ stalled: stalled ? ` | ${stalled}` : '' });
  }

  /** Records per second in this run. */
  rate(): number {
    const seconds = (performance.now() - this.started) / 1000;
    return seconds > 0 ? this.done / seconds : 0;
  }

  line(): string {
    const { total, alreadyDone } = this.options;
    const complete = alreadyDone + this.done;
    const rate = this.rate();
    const left = total - complete;
    const percent = total > 0 ? ((100 * complete) / total).toFixed(1) : '100.0';
    const stalled = this.options.stalled?.();
    const eta = stalled ? `no ETA: ${stalled}` : `ETA ${rate > 0 ? formatSeconds(left / rate) : '?'}`;
    return `${this.options.label ?? 'batch'}: ${complete}/${total} records (${percent}%), ${this.failed} failed, ${rate.toFixed(1)} records/s, ${eta}`;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.bar?.stop();
    this.bar = undefined;
  }
}

/** What a batch job reports when it ends (stderr as text, stdout as one JSON line from the CLI). */
export interface BatchSummary {
  output: string;
  /** Records in the input. */
  records: number;
  /** Records already in the output when this run started (skipped). */
  resumed: number;
  /** Records run and written by this run. */
  processed: number;
  /** Of those, records written with an error. */
  failed: number;
  /** Of those, images the version's reference profile judged out of distribution (their `ood` verdict). */
  outOfDistribution: number;
  /** Records in the output with an error, earlier runs included. */
  failedTotal: number;
  wallSeconds: number;
  /** processed / wallSeconds. */
  recordsPerSecond: number;
  /** Time inside model execution (Triton's batch statistics: compute input + infer + output), summed over instances and workers. */
  computeSeconds: number;
  /** computeSeconds / wallSeconds; over 1 when several instances or workers run at once. */
  computeShare: number;
  /** Distributed jobs: the job name. */
  job?: string;
  /** Distributed jobs: the one model version that answers the job's records (unset until a worker resolved it). */
  modelVersion?: string;
  chunks?: number;
  /**
   * Distributed jobs: chunks that failed after every attempt. `writtenAsErrors` false: no worker could run it (its model
   * missing or not loading on the workers), its records are not written and the job exits 3; true: any other failure
   * (its workers lost more than --max-stalled-count times), its records are written with the error, as failed records.
   */
  failedChunks?: { chunk: number; records: number; reason: string; writtenAsErrors: boolean }[];
  /**
   * Chunks some of whose records got no answer this run: the chunk vanished from Redis before it finished (a restart
   * without persistence, a flush), or ran with other records (the input changed while it was queued). Those records are
   * not written, so a rerun submits them again.
   */
  lostChunks?: { chunk: number; records: number; reason: string }[];
  /** Set when the job stopped early (interrupted); rerun the same command to continue. */
  interrupted?: boolean;
  /** Distributed jobs: records of `processed` whose chunks finished before this run began (left out of its rate). */
  collectedEarlier?: number;
  /** Distributed jobs cancelled by `nereid batch cancel` while this run submitted them: when, and the records not written. */
  cancelled?: { at: string; recordsLeft: number };
}

/** The summary's derived figures (rates and shares) from what a run counted. */
export function summarize(
  counted: Pick<BatchSummary, 'output' | 'records' | 'resumed' | 'processed' | 'failed' | 'outOfDistribution' | 'wallSeconds' | 'computeSeconds' | 'collectedEarlier'> & {
    /** Records in the output with an error before this run (failedTotal adds this run's). */
    failedBefore: number;
    interrupted: boolean;
  },
): BatchSummary {
  const { failedBefore, interrupted, collectedEarlier = 0, ...rest } = counted;
  return {
    ...rest,
    ...(collectedEarlier > 0 ? { collectedEarlier } : {}),
    failedTotal: failedBefore + counted.failed,
    recordsPerSecond: counted.wallSeconds > 0 ? (counted.processed - collectedEarlier) / counted.wallSeconds : 0,
    computeShare: counted.wallSeconds > 0 ? counted.computeSeconds / counted.wallSeconds : 0,
    ...(interrupted ? { interrupted } : {}),
  };
}

export function formatSummary(summary: BatchSummary): string {
  const lines = [
    `${summary.interrupted ? 'interrupted' : summary.cancelled ? 'cancelled' : 'done'}: ${summary.processed} record(s) in ${formatSeconds(summary.wallSeconds)} ` +
      `(${summary.recordsPerSecond.toFixed(1)} records/s${summary.collectedEarlier ? `, leaving out ${summary.collectedEarlier} whose chunks finished before this run` : ''}), ${summary.failed} failed` +
      (summary.outOfDistribution > 0 ? `, ${summary.outOfDistribution} out of distribution (their "ood" verdicts)` : '') +
      (summary.resumed > 0 ? `; ${summary.resumed} already in the output` : '') +
      `; ${summary.resumed + summary.processed}/${summary.records} records written to ${summary.output}` +
      (summary.failedTotal > summary.failed ? ` (${summary.failedTotal} with errors in all)` : ''),
    `model execution ${summary.computeSeconds.toFixed(2)} s = ${(100 * summary.computeShare).toFixed(0)}% of wall time` +
      (summary.job ? ` (summed over workers), job '${summary.job}', ${summary.chunks} chunk(s)` : ''),
  ];
  for (const chunk of summary.failedChunks ?? []) {
    const records = chunk.writtenAsErrors ? `${chunk.records} record(s) written with the error; --retry-failed runs them again` : `${chunk.records} record(s) not written; rerun the same command once the cause is fixed`;
    lines.push(`chunk ${chunk.chunk} failed (${records}): ${chunk.reason}`);
  }
  for (const chunk of summary.lostChunks ?? []) {
    lines.push(`chunk ${chunk.chunk} ${chunk.reason}: ${chunk.records} of its record(s) are not written; rerun the same command to submit them again`);
  }
  if (summary.cancelled) {
    lines.push(`the job was cancelled at ${summary.cancelled.at} (nereid batch cancel): ${summary.cancelled.recordsLeft} record(s) not written; rerun the same command to resume it`);
  }
  if (summary.interrupted) lines.push('rerun the same command to continue where it stopped');
  return lines.join('\n');
}
