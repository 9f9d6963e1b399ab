/**
 * Greedy CTC decoding of a text-line recogniser's output, as PaddleOCR's CTCLabelDecode does it:
 * the most probable class at each time step, repeats collapsed, the blank (class 0) dropped.
 */

export interface DecodedLine {
  text: string;
  /** Mean probability of the characters kept (0 when none is): PaddleOCR's line confidence. */
  score: number;
}

/** Decodes one line's [steps, classes] probabilities, `labels` holding one label per class. */
export function decodeCtc(probabilities: Float32Array, labels: readonly string[]): DecodedLine {
  const classes = labels.length;
  if (classes === 0 || probabilities.length % classes !== 0) {
    throw new Error(`the recogniser's output has ${probabilities.length} values, not a whole number of steps of ${classes} classes (one per label)`);
  }
  let text = '';
  let kept = 0;
  let confidence = 0;
  let previous = -1;
  for (let offset = 0; offset < probabilities.length; offset += classes) {
    let best = 0;
    let bestScore = probabilities[offset];
    for (let index = 1; index < classes; index++) {
      const score = probabilities[offset + index];
      if (score > bestScore) {
        best = index;
        bestScore = score;
      }
    }
    if (best !== 0 && best !== previous) {
      text += labels[best];
      confidence += bestScore;
      kept += 1;
    }
    previous = best;
  }
  return { text, score: kept > 0 ? confidence / kept : 0 };
}
