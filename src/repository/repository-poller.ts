/**
 * Triton's --model-control-mode poll: every period the repository is scanned and each model folder
 * compared with the last scan by the digest of its contents. A new folder is loaded, a changed one
 * reloaded and a removed one unloaded, all through the repository's own load path, which keeps the
 * loaded versions serving when a reload fails (and the index then says why).
 */
import type { Logger } from 'pino';
import { FolderFingerprints } from './model-fingerprint.js';
import { DuplicateModelError } from './load-failure.js';
import type { ModelRepository } from './model-repository.js';

export interface RepositoryPollerOptions {
  repository: ModelRepository;
  intervalMs: number;
  logger: Logger;
  /** How a new or changed model is loaded (default: the repository's load). */
  load?: (name: string) => Promise<void>;
  /** How a removed model is unloaded (default: the repository's unload). */
  unload?: (name: string) => Promise<unknown>;
}

interface Seen {
  folder: string;
  fingerprint: string;
}

export class RepositoryPoller {
  private readonly fingerprints = new FolderFingerprints();
  private seen = new Map<string, Seen>();
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;
  /** The failure of a scan last logged, while polls keep failing so (not one of a repository that cannot be read). */
  private failureSaid?: string;
  /** Scans finished since start(), with the loads and unloads they caused. */
  completedPolls = 0;

  constructor(private readonly options: RepositoryPollerOptions) {}

  /** Records the repository as it is now, before the initial load: a change made during that load is seen by the first poll. */
  async baseline(): Promise<void> {
    this.seen = await this.scan();
  }

  start(): void {
    this.stopped = false;
    this.schedule();
  }

  /** No further scan starts; resolves once the one running (and its loads) has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private schedule(): void {
    if (this.stopped) return;
    // One scan at a time: the next is timed from the end of the last, so a slow load never piles scans up.
    this.timer = setTimeout(() => {
      this.running = this.poll().finally(() => {
        this.completedPolls++;
        this.running = undefined;
        this.schedule();
      });
    }, this.options.intervalMs);
    this.timer.unref();
  }

  /** One scan: loads what is new or changed and unloads what is gone. */
  async poll(): Promise<void> {
    const { repository, logger } = this.options;
    const load = this.options.load ?? ((name: string) => repository.load(name));
    const unload = this.options.unload ?? ((name: string) => repository.unload(name));
    let now: Map<string, Seen>;
    try {
      now = await this.scan();
    } catch (error) {
      // Said once, not at every poll: the repository itself says that it cannot be read, and when it can again.
      const message = (error as Error).message;
      if (repository.readable && message !== this.failureSaid) logger.warn(`repository poll failed; models stay as they are: ${message}`);
      if (repository.readable) this.failureSaid = message;
      return;
    }
    if (this.failureSaid !== undefined) logger.info('repository poll: the repository is scanned again');
    this.failureSaid = undefined;
    const actions: Promise<void>[] = [];
    for (const [name, current] of now) {
      const before = this.seen.get(name);
      // The root was swapped to another target: the same content there is the same model, its old files' digests go.
      if (before && before.folder !== current.folder) this.fingerprints.forget(before.folder);
      if (before?.fingerprint === current.fingerprint) continue;
      // A name now in two repositories was warned of by the scan; its load only records why it is not served.
      const what = current.folder === '' ? undefined : before === undefined ? 'is new; loading' : before.folder === '' ? 'is in one repository now; loading' : 'changed; reloading';
      if (what) logger.info({ model: name }, `repository poll: model '${name}' ${what}`);
      // The repository logs a failed load and keeps it as the model's state (or its reason beside the versions still serving).
      actions.push(load(name).catch(() => undefined));
    }
    for (const [name, before] of this.seen) {
      if (now.has(name)) continue;
      logger.info({ model: name }, `repository poll: model '${name}' was removed; unloading`);
      this.fingerprints.forget(before.folder);
      actions.push(unload(name).then(() => undefined, () => undefined));
    }
    this.seen = now;
    await Promise.all(actions);
  }

  private async scan(): Promise<Map<string, Seen>> {
    const { repository } = this.options;
    const seen = new Map<string, Seen>();
    // Each scan follows the root anew: a root that is a link (git-sync, a release symlink) may point elsewhere now.
    await repository.resolveRootsAgain();
    for (const name of await repository.discover()) {
      // A folder that vanished or turned into a link out of the repository since discover() is simply not there; a name
      // in two repositories is there, and its load says why it serves from neither (one serving from one of them is
      // found where it serves, the copy ignored).
      const folder = await repository.folderOf(name).catch((error: unknown) => (error instanceof DuplicateModelError ? error : undefined));
      if (folder instanceof DuplicateModelError) seen.set(name, { folder: '', fingerprint: folder.message });
      else if (folder) seen.set(name, { folder, fingerprint: await this.fingerprints.of(folder) });
    }
    // A repository that went away during the scan (a volume unmounted) made its folders look removed or emptied:
    // that scan is thrown away, and the models stay as they are, rather than being unloaded.
    await repository.discover();
    return seen;
  }
}
