/**
 * One run of a task per key at a time, shared: a caller that finds a run under way for its key waits for that run
 * (and gets its result or its failure) instead of starting another. A load that many requests or ensembles need at once
 * is made once this way, not once per caller; the next call after the run settles starts a fresh one.
 */
export class SingleFlight<Key> {
  private readonly underWay = new Map<Key, Promise<void>>();

  run(key: Key, start: () => Promise<void>): Promise<void> {
    let running = this.underWay.get(key);
    if (!running) {
      running = start().finally(() => this.underWay.delete(key));
      this.underWay.set(key, running);
    }
    return running;
  }
}
