/**
 * How people and folders name a model's classes: by label, by a folder name that spells the label
 * ('/' cannot be in a folder name), or by index.
 */

/** The folder a class's images go in: its label, with '/' (which no folder name can hold) written as '_'. */
export function classFolderName(label: string): string {
  return label.replaceAll('/', '_');
}

/**
 * The class a name gives — its label, its folder name (see classFolderName) or its index in decimal — or undefined
 * when it gives none. A label wins over an index that reads the same.
 */
export function classOfName(labels: readonly string[]): (name: string) => number | undefined {
  const byName = new Map<string, number>();
  labels.forEach((label, index) => byName.set(classFolderName(label), index));
  labels.forEach((label, index) => byName.set(label, index));
  return (name) => byName.get(name) ?? (/^\d+$/.test(name) && Number(name) < labels.length ? Number(name) : undefined);
}
