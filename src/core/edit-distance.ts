/** Levenshtein distance, by code point. */
export function editDistance(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  let row = Array.from({ length: y.length + 1 }, (_, index) => index);
  for (let i = 1; i <= x.length; i++) {
    const next = [i];
    for (let j = 1; j <= y.length; j++) next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (x[i - 1] === y[j - 1] ? 0 : 1));
    row = next;
  }
  return row[y.length];
}

/**
 * The known name a mistyped one most likely meant: the closest within a third of its length (at
 * least 2 edits) or one it begins (label_file for label_filename), so that a typo finds its field
 * and an unrelated word finds none.
 */
export function closestName(name: string, known: Iterable<string>): string | undefined {
  const allowed = Math.max(2, Math.floor(name.length / 3));
  const typed = name.toLowerCase();
  let best: { name: string; distance: number } | undefined;
  for (const candidate of known) {
    const distance = editDistance(typed, candidate.toLowerCase());
    const near = distance <= allowed || (typed.length >= 4 && candidate.toLowerCase().startsWith(typed));
    if (near && (!best || distance < best.distance)) best = { name: candidate, distance };
  }
  return best?.name;
}
