/**
 * The repository folders a server serves, as configured and as their links resolve (again at each poll), which of
 * them holds each model (a name in two serves from none), what model folders they hold, and whether they can be read:
 * said in the log once each time that turns.
 */
import { realpath, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import type { Logger } from 'pino';
import { invalidArgument, NereidError, notFound, quoteName } from '../core/errors.js';
import { DuplicateModelError } from './load-failure.js';
import { checkModelName, modelNameProblem } from './model-name.js';
import { fileSystemError, foldersIn, otherOnnxFiles, repositoryFolder } from './repository-layout.js';

export interface RepositoryRootsOptions {
  /** The repository folder, or several: a model's name must then be in one of them only. */
  root: string | readonly string[];
  logger: Logger;
  /** A serving model that a copy of appears in another repository keeps serving from where it was (ModelRepositoryOptions). */
  keepServingBesideCopies?: boolean;
  /** The repository folder (as configured) a model serves from; undefined while it has no ready version. */
  servingRepository?: (name: string) => string | undefined;
  /** A model of several repositories was found in one only, `repository` (as configured). */
  foundIn?: (name: string, repository: string) => void;
}

export class RepositoryRoots {
  private rootPaths?: string[];
  /** Model names found in two or more repository folders when last looked for, with what the log said of them (said once each). */
  private readonly duplicates = new Map<string, string>();
  /** Each resolved repository folder, and the folder as configured (how messages name it). */
  private rootLabels = new Map<string, string>();
  /** Each configured folder, and where it resolved to when last looked at. */
  private resolvedOf = new Map<string, string>();
  /** Model folders that are links leaving the repository, with their targets, as last warned of. */
  private linksLeaving = new Map<string, string | undefined>();
  /** The repository folder that could not be read (all of them, when the error did not say which), for the log. */
  private unreadablePath?: string;
  /** Why the last listing could not read the repository; undefined while it can. */
  private unreadable?: string;

  constructor(private readonly options: RepositoryRootsOptions) {}

  /** Why the repository could not be read when last looked at, as clients are told it; undefined while it can. */
  get unreadableReason(): string | undefined {
    return this.unreadable;
  }

  /** How messages name a resolved repository folder: as configured. */
  labelOf(root: string): string {
    return this.rootLabels.get(root) ?? root;
  }

  /** Whether the server serves two or more repositories (a folder named twice is one). */
  get several(): boolean {
    return this.rootLabels.size > 1;
  }

  /** The repository folder (as configured) a path lies in; the first one configured when it lies in none. */
  async repositoryOf(path: string): Promise<string> {
    return this.rootLabels.get(await this.placeOfFolder(path)) ?? this.configuredRoots[0];
  }

  /** The repository folders as configured. */
  private get configuredRoots(): readonly string[] {
    return typeof this.options.root === 'string' ? [this.options.root] : this.options.root;
  }

  /** How messages name the repository: its folder, or every folder when there are several. */
  private get rootsLabel(): string {
    return this.configuredRoots.join(', ');
  }

  /**
   * The repository folders with every link followed, as last resolved. Resolved once and kept (a poll resolves them
   * again, resolveRootsAgain): files a model reads are checked against its own repository folder with their own links
   * followed, so that none is read from outside it; a root itself being a link is the operator's choice.
   */
  async roots(): Promise<string[]> {
    this.rootPaths ??= await this.resolveRoots();
    return this.rootPaths;
  }

  /**
   * Each configured folder resolved, once: a folder named twice (or through a link to it) is one repository, not a
   * second holding every model again. One inside another is refused: its folder would be a model of the outer one.
   */
  private async resolveRoots(atStart = true): Promise<string[]> {
    const resolved = await Promise.all(this.configuredRoots.map((root) => repositoryFolder(root, { atStart })));
    const labels = new Map<string, string>();
    for (const [index, root] of resolved.entries()) if (!labels.has(root)) labels.set(root, this.configuredRoots[index]);
    for (const inner of labels.keys()) {
      const outer = [...labels.keys()].find((root) => inner.startsWith(root + sep));
      if (outer) throw invalidArgument(`model repository ${labels.get(inner)} lies inside model repository ${labels.get(outer)}: its folder would be one of the outer repository's models; name folders side by side`);
    }
    this.resolvedOf = new Map(this.configuredRoots.map((configured, index) => [configured, resolved[index]]));
    this.rootLabels = labels;
    return [...labels.keys()];
  }

  /**
   * Resolves the repository folders again, as each poll does first: a root that is a link swapped to another target
   * (Kubernetes git-sync, a release symlink) is followed to where it points now. Logged when a target changed;
   * a root that cannot be resolved now throws and keeps the last targets.
   */
  async resolveRootsAgain(): Promise<{ from: string; to: string } | undefined> {
    const before = this.rootPaths === undefined ? undefined : new Map(this.resolvedOf);
    try {
      this.rootPaths = await this.resolveRoots(this.rootPaths === undefined);
    } catch (error) {
      if (before !== undefined) this.noteUnreadable(error);
      throw error;
    }
    let changed: { from: string; to: string } | undefined;
    for (const [configured, to] of this.resolvedOf) {
      const from = before?.get(configured);
      if (from === undefined || from === to) continue;
      this.options.logger.info({ repository: configured, from, to }, `model repository ${configured} now points to ${to} (was ${from}); models are compared with what is there`);
      changed ??= { from, to };
    }
    return changed;
  }

  /** The repository folder a path (links followed) lies in; the first folder for one in none. */
  async placeOfFolder(path: string): Promise<string> {
    const roots = await this.roots();
    return roots.find((root) => path === root || path.startsWith(root + sep)) ?? roots[0];
  }

  /**
   * The repository folder that holds the model and the model's folder in it, links followed. A name found in two or
   * more repositories is served from none, as in Triton, unless it serves from one of them and keepServingBesideCopies.
   */
  async placeOf(name: string): Promise<{ root: string; folder: string }> {
    checkModelName(name);
    const roots = await this.roots();
    if (roots.length === 1) return { root: roots[0], folder: await this.modelFolder(name, roots[0]) };
    const holding = (await Promise.all(roots.map(async (root) => ((await this.modelFolder(name, root).then(() => true, () => false)) ? root : undefined)))).filter(
      (root) => root !== undefined,
    );
    const labelOf = (root: string) => this.rootLabels.get(root) ?? root;
    if (holding.length > 1) {
      const servingFrom = this.options.keepServingBesideCopies ? this.options.servingRepository?.(name) : undefined;
      const kept = holding.find((root) => labelOf(root) === servingFrom);
      const copies = holding.filter((root) => root !== kept).map(labelOf);
      // Said once per situation, not at every poll that finds it so again; the folders' paths are for the log only.
      const warning = kept
        ? `model '${name}' serving from ${labelOf(kept)} also appears in ${copies.join(' and ')}: ${copies.length > 1 ? 'those copies are' : 'that copy is'} ignored and the model keeps serving from ${labelOf(kept)}; remove one of them (the one left is then the model, and is loaded if it differs)`
        : `model '${name}' appears in ${copies.join(' and ')}: it is served from none of them until all but one are renamed or removed`;
      if (this.duplicates.get(name) !== warning) this.options.logger.warn({ model: name, repositories: holding.map(labelOf) }, warning);
      this.duplicates.set(name, warning);
      if (kept) return { root: kept, folder: await this.modelFolder(name, kept) };
      // Triton's reason in its own words first (its tests compare them), then which repositories, named as clients may see them.
      throw new DuplicateModelError(`model appears in two or more repositories: ${this.clientRepositoryNames(holding).join(' and ')}`);
    }
    if (holding.length === 1 && this.duplicates.delete(name)) {
      this.options.logger.info({ model: name, repository: labelOf(holding[0]) }, `model '${name}' is now in one model repository only, ${labelOf(holding[0])}`);
    }
    // Where its files are now (the other copy of a duplicate removed): a copy appearing later is the ignored one.
    if (holding.length === 1) this.options.foundIn?.(name, labelOf(holding[0]));
    if (holding.length === 0) {
      // A link out of its repository is refused as such, not as a model that is not there.
      for (const root of roots) await this.modelFolder(name, root).catch((error: unknown) => {
        if (!(error instanceof NereidError && error.code === 'NOT_FOUND')) throw error;
      });
      throw notFound(`model ${quoteName(name)} is not in the model repositories`);
    }
    return { root: holding[0], folder: await this.modelFolder(name, holding[0]) };
  }
  /**
   * Repository folders as a client may be told of them: by their last path segment, never the server's whole path; by
   * their place among the repositories too when two end alike.
   */
  private clientRepositoryNames(roots: readonly string[]): string[] {
    const nameOf = (label: string) => basename(resolve(label));
    // One per repository: a folder given twice is one repository, not two of the same name.
    const labels = [...this.rootLabels.values()];
    return roots.map((root) => {
      const label = this.rootLabels.get(root) ?? root;
      const name = nameOf(label);
      const alike = labels.filter((other) => nameOf(other) === name).length > 1;
      return alike ? `'${name}' (repository ${this.configuredRoots.indexOf(label) + 1})` : `'${name}'`;
    });
  }

  /**
   * The model folders in the repository, whether loaded or not. A repository that cannot be read, or can be again, is
   * said in the log whoever looked (a poll, a listing), once each time it turns.
   */
  async discover(): Promise<string[]> {
    // At start a wrong path stops the server: it is not a repository that went away.
    const roots = await this.roots();
    const names = new Set<string>();
    const leaving = new Map<string, string | undefined>();
    try {
      for (const root of roots) {
        // A link to a model folder elsewhere in the repository serves it under the link's name as well.
        // Named as a client could ask for it; the others are warned of at start (unservableFolders).
        const accept = (name: string) => modelNameProblem(name) === undefined;
        for (const name of await foldersIn(root, root, accept, (name, target) => leaving.set(join(root, name), target))) names.add(name);
      }
    } catch (error) {
      this.noteUnreadable(error);
      throw error;
    }
    this.noteReadable();
    this.warnOfLinksLeaving(leaving);
    return [...names].sort();
  }

  /**
   * Model folders that are links out of the repository (or to nothing) are not served: said once per link and target,
   * in the log only (where it leads is the server's layout, not a client's business), so that a model linked in from a
   * shared store does not vanish without a word. A link removed and made again is said again.
   */
  private warnOfLinksLeaving(leaving: ReadonlyMap<string, string | undefined>): void {
    for (const [link, target] of leaving) {
      if (this.linksLeaving.has(link) && this.linksLeaving.get(link) === target) continue;
      const where = this.rootLabels.get(dirname(link)) ?? dirname(link);
      const model = basename(link);
      this.options.logger.warn(
        { model, link, target },
        target === undefined
          ? `the folder '${model}' in the model repository ${where} is a link to nothing (${link} leads to no file): model '${model}' is not served`
          : `the folder '${model}' in the model repository ${where} is a link to ${target}, outside the model repository: model '${model}' is not served (a model folder may be a link only to a folder inside the repository; copy or mount it there)`,
      );
    }
    this.linksLeaving = new Map(leaving);
  }

  /** Whether the repository could be read when last looked at. */
  get readable(): boolean {
    return this.unreadable === undefined;
  }

  /**
   * Records that the repository cannot be read, and logs it with the path when it was readable before (or the reason
   * changed); returns the reason as clients are told it, without the server's paths.
   */
  noteUnreadable(error: unknown): string {
    const { code, path } = fileSystemError(error);
    const plain: Record<string, string> = { ENOENT: 'it does not exist now', ENOTDIR: 'it is not a folder now', EACCES: 'permission denied' };
    const why = code === undefined ? 'it does not exist now or is not a folder' : `${plain[code] ?? 'error'}, ${code}`;
    const unreadable = `the model repository cannot be read (${why}); listed: the models this server holds`;
    this.unreadablePath = path ?? this.rootsLabel;
    if (this.unreadable !== unreadable) {
      this.options.logger.warn(
        { code, path },
        `the model repository ${this.unreadablePath} cannot be read (${why}): the models loaded keep serving as they are, and nothing is loaded or unloaded until it can be read again`,
      );
    }
    this.unreadable = unreadable;
    return unreadable;
  }

  private noteReadable(): void {
    if (this.unreadable === undefined) return;
    this.unreadable = undefined;
    this.options.logger.info(`the model repository ${this.unreadablePath ?? this.rootsLabel} can be read again`);
  }

  /**
   * Folders whose names no client could ask for (spaces, other scripts, a leading '-', '..', over 255 characters), each
   * with the rule it breaks: not served, so worth a word at start. Hidden folders (.git) and a volume's lost+found (a
   * repository on its own file system) are no model folders.
   */
  async unservableFolders(): Promise<{ folder: string; problem: string }[]> {
    const folders: { folder: string; problem: string }[] = [];
    // Each folder's name is judged once, worded for a folder; the folders kept are those with a problem.
    const problems = new Map<string, string>();
    const unservable = (name: string) => {
      const problem = name.startsWith('.') || name === 'lost+found' ? undefined : modelNameProblem(name, 'folder');
      if (problem !== undefined) problems.set(name, problem);
      return problem !== undefined;
    };
    for (const root of await this.roots()) {
      for (const folder of await foldersIn(root, root, unservable)) folders.push({ folder, problem: problems.get(folder)! });
    }
    return folders.sort((a, b) => (a.folder < b.folder ? -1 : a.folder > b.folder ? 1 : 0));
  }

  /** ONNX files lying directly in the repository: not served (a model is a folder), so worth a word at start. */
  async looseModelFiles(): Promise<string[]> {
    return (await Promise.all((await this.roots()).map((root) => otherOnnxFiles(root)))).flat();
  }

  /** `root`: the repository folder as a load resolved it at its start (a poll may resolve it again meanwhile). */
  private async modelFolder(name: string, root: string): Promise<string> {
    checkModelName(name);
    const folder = join(root, name);
    const real = await realpath(folder).catch(() => {
      throw notFound(`model ${quoteName(name)} is not in the model repository`);
    });
    if (!real.startsWith(root + sep)) throw invalidArgument(`model ${quoteName(name)} resolves outside the model repository`);
    if (!(await stat(real)).isDirectory()) throw notFound(`model ${quoteName(name)} is not in the model repository`);
    return real;
  }
}
