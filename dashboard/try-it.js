// What the try-it panel sends an image to, and what it draws over the image: the boxes of a /detect
// answer with their labels, and the text lines of an OCR answer (outputs `text`, `boxes`, `scores`)
// with their text. Shapes are read from the answer first, then drawn as SVG in the image's own pixel
// coordinates, so that they stay on their objects however large the image is shown. No page state
// here: the browser test imports this module on its own.

const SVG = 'http://www.w3.org/2000/svg';

/**
 * How the panel sends an image to a model, from what the server reports of it: outputs `text` and
 * `boxes` in its metadata (the OCR pipeline's) → its /infer; /detect's checks passed (the
 * `image_routes` of its dashboard snapshot) where the server has /detect → /detect; /classify's
 * passed → /classify; otherwise none (the V2 JSON tab). Never its name: a model named `ocr_detection`
 * is no object detector.
 */
export function imageModeOf(metadata, imageRoutes, routes) {
  const outputs = (metadata?.outputs ?? []).map((output) => output.name);
  if (outputs.includes('text') && outputs.includes('boxes')) return 'text';
  if (routes.detect && imageRoutes?.detect) return 'detect';
  if (routes.classify && imageRoutes?.classify) return 'classify';
  return undefined;
}

/** The most elements a template fills with zeros: more would bury the request in the text box. */
const TEMPLATE_ELEMENTS = 100_000;

/**
 * A KServe V2 request for a model that the server accepts as it stands: each input of its metadata
 * (the wire inputs, as /v2/models/<name> reports them: an image input decoded by the server is BYTES
 * there, whatever tensor the model runs on) with that name, datatype and shape, a variable dim set to
 * the multiple its config asks for (`dims_multiple_of`) or 1, and zeros (empty strings, false) as data.
 * An image input gets one empty element: JSON carries no encoded image, and the server answers that
 * the image is empty (a BYTES input the model decodes as an image itself, such as the OCR pipeline's,
 * is not told from other strings: its note says both). Returns `{ request, notes }`, `notes` saying what the template cannot hold.
 */
export function requestTemplate(metadata, config) {
  const notes = [];
  const inputs = (metadata?.inputs ?? []).map((input) => {
    const declared = config?.input?.find((candidate) => candidate.name === input.name);
    const multiples = declared?.dims_multiple_of ?? [];
    const offset = input.shape.length - multiples.length; // the batch dim comes first in the metadata, not in the config
    const shape = input.shape.map((dim, index) => (dim >= 0 ? dim : Math.max(1, multiples[index - offset] ?? 1)));
    const count = shape.reduce((product, dim) => product * dim, 1);
    const zero = input.datatype === 'BYTES' ? '' : input.datatype === 'BOOL' ? false : 0;
    if (declared?.preprocess?.image) notes.push(`${input.name} takes an encoded image, which JSON cannot carry: send one from the Image tab`);
    else if (input.datatype === 'BYTES') notes.push(`${input.name} is BYTES, an empty string each: put yours in (an encoded image goes through the Image tab)`);
    else if (count > TEMPLATE_ELEMENTS) notes.push(`${input.name} holds ${count.toLocaleString('en')} elements: fill its data in`);
    return { name: input.name, shape, datatype: input.datatype, data: count > TEMPLATE_ELEMENTS ? [] : Array(count).fill(zero) };
  });
  return { request: { inputs }, notes };
}

/**
 * The shapes of a /detect answer: `{ image: { width, height }, detections: [{ label, score, box: [x_min, y_min, x_max, y_max] }] }`.
 * Each shape: `{ points: [[x, y] × 4] clockwise from top-left, label, score }`.
 */
export function detectionShapes(answer) {
  return (answer.detections ?? []).map((detection) => {
    const [x0, y0, x1, y1] = detection.box;
    return { points: [[x0, y0], [x1, y0], [x1, y1], [x0, y1]], label: detection.label ?? String(detection.index), score: detection.score };
  });
}

/**
 * The shapes of a V2 answer with the OCR outputs: `text` BYTES [n] (one string per line), `boxes`
 * FP32 [n, 4, 2] (each line's quadrilateral, clockwise from top-left), `scores` FP32 [n]. Undefined
 * when the answer has no `text` and `boxes` outputs.
 */
export function textShapes(answer) {
  const output = (name) => answer.outputs?.find((candidate) => candidate.name === name);
  const text = output('text');
  const boxes = output('boxes');
  if (!text || !boxes) return undefined;
  const scores = output('scores')?.data ?? [];
  return text.data.map((line, index) => ({
    points: [0, 1, 2, 3].map((corner) => [boxes.data[index * 8 + corner * 2], boxes.data[index * 8 + corner * 2 + 1]]),
    label: String(line),
    score: scores[index],
  }));
}

/** The phases of a /classify or /detect answer's `timing`, in the order a request goes through them. */
const IMAGE_PHASES = [['pre-process', 'preprocess_ms'], ['queue', 'queue_ms'], ['inference', 'inference_ms'], ['post-process', 'postprocess_ms'], ['total', 'total_ms']];

/**
 * Where the server says an answer's time went, as `[phase, ms]` rows: a /classify or /detect answer's `timing`, or
 * the OCR pipeline's `timings` output (one JSON string: decode_ms, detection_ms, … total_ms, beside counts that are
 * not times); undefined when the answer carries neither. A phase the answer leaves out is left out.
 */
export function phaseTimings(answer) {
  if (answer?.timing && typeof answer.timing === 'object') {
    return IMAGE_PHASES.filter(([, key]) => typeof answer.timing[key] === 'number').map(([phase, key]) => [phase, answer.timing[key]]);
  }
  const text = answer?.outputs?.find((output) => output.name === 'timings')?.data?.[0];
  if (typeof text !== 'string') return undefined;
  let timings;
  try {
    timings = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!timings || typeof timings !== 'object') return undefined;
  const rows = Object.entries(timings)
    .filter(([key, ms]) => key.endsWith('_ms') && typeof ms === 'number')
    .map(([key, ms]) => [key.slice(0, -3).replaceAll('_', ' '), ms]);
  return rows.length > 0 ? rows : undefined;
}

/** Whether an answer is one the panel draws, and how: 'detections', 'text', 'predictions' or undefined. */
export function answerKind(answer) {
  if (Array.isArray(answer?.detections)) return 'detections';
  if (answer && textShapes(answer)) return 'text';
  if (Array.isArray(answer?.predictions)) return 'predictions';
  return undefined;
}

const element = (name, attributes, text) => {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
};

/**
 * Draws `shapes` into `svg` over an image of `width` × `height` pixels: an outline per shape and its
 * label above it (inside the image when the shape touches the top). Series colours repeat per label.
 * `numbered` captions each shape with its number in the list beside the image instead, at its left:
 * lines of text lie close together, and a caption above one would hide the line before it.
 */
export function drawShapes(svg, shapes, { width, height }, { numbered = false } = {}) {
  svg.replaceChildren();
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('preserveAspectRatio', 'xMidYMid meet');
  // In image pixels, a fortieth of its longer side: about 15 px on screen at the size the panel shows images.
  const fontSize = Math.max(width, height) / 40;
  const colours = new Map();
  const PALETTE = ['#2f7ed8', '#e4572e', '#17a673', '#a05ad6', '#f0a202', '#d6336c'];
  shapes.forEach((shape, index) => {
    if (!colours.has(shape.label)) colours.set(shape.label, PALETTE[colours.size % PALETTE.length]);
    const colour = colours.get(shape.label);
    const group = element('g', { 'data-shape': index, 'data-label': shape.label });
    group.append(
      element('polygon', {
        points: shape.points.map(([x, y]) => `${x},${y}`).join(' '),
        fill: 'none',
        stroke: colour,
        'stroke-width': 2,
        'vector-effect': 'non-scaling-stroke',
      }),
    );
    const [x, y] = shape.points[0];
    const caption = numbered ? String(index + 1) : shape.score === undefined ? shape.label : `${shape.label} ${(shape.score * 100).toFixed(0)}%`;
    // A background sized from the caption's length: measuring text would need the SVG laid out first.
    const tagWidth = caption.length * fontSize * 0.6 + fontSize * 0.5;
    const [left, top] = numbered
      ? [x - tagWidth >= 0 ? x - tagWidth : x, y]
      : [x, y - fontSize * 1.3 >= 0 ? y - fontSize * 1.3 : y];
    group.append(element('rect', { x: left, y: top, width: tagWidth, height: fontSize * 1.3, fill: colour, opacity: 0.85 }));
    group.append(element('text', { x: left + fontSize * 0.25, y: top + fontSize, 'font-size': fontSize, fill: '#fff' }, caption));
    svg.append(group);
  });
}

/** Values of an array shown before "… N more": a V2 answer's data can be millions of numbers. */
export const SHOWN_ITEMS = 64;
/** Characters of a string shown before "… N more characters" (a BYTES element can be a whole file). */
export const SHOWN_CHARACTERS = 1000;
/** A structure whose one-line form is at most this long is kept on one line. */
const INLINE_WIDTH = 100;

/**
 * A JSON answer as a person reads it: objects indented, arrays of numbers and other short values on one line, and
 * arrays and strings past `maxItems` values / `maxCharacters` characters cut, saying how many more there are. Printed
 * one value per line (JSON.stringify's indentation), an 8 MB answer was 8 million lines and froze the tab for 13 s.
 * Returns `{ text, truncated }`; the text is the answer's JSON, spacing aside, when nothing was cut.
 */
export function compactJson(value, { maxItems = SHOWN_ITEMS, maxCharacters = SHOWN_CHARACTERS } = {}) {
  let truncated = false;
  const more = (count, what) => {
    truncated = true;
    return `… ${count.toLocaleString('en')} more${what}`;
  };
  const format = (item, indent) => {
    if (typeof item === 'string') return item.length > maxCharacters ? `${JSON.stringify(item.slice(0, maxCharacters))} ${more(item.length - maxCharacters, ' characters')}` : JSON.stringify(item);
    if (item === null || typeof item !== 'object') return JSON.stringify(item) ?? 'null';
    const inner = `${indent}  `;
    let parts;
    let open;
    let close;
    if (Array.isArray(item)) {
      const shown = item.slice(0, maxItems);
      parts = shown.map((element) => format(element, inner));
      if (item.length > maxItems) parts.push(more(item.length - maxItems, ''));
      [open, close] = ['[', ']'];
      // Numbers and other scalars stay on one line however many are shown: that is what makes a tensor readable.
      if (shown.every((element) => element === null || typeof element !== 'object')) return `[${parts.join(', ')}]`;
    } else {
      parts = Object.entries(item).map(([key, entry]) => `${JSON.stringify(key)}: ${format(entry, inner)}`);
      [open, close] = ['{', '}'];
    }
    if (parts.length === 0) return `${open}${close}`;
    const line = `${open}${parts.join(', ')}${close}`;
    if (line.length <= INLINE_WIDTH && !line.includes('\n')) return line;
    return `${open}\n${parts.map((part) => `${inner}${part}`).join(',\n')}\n${indent}${close}`;
  };
  const text = format(value, '');
  return { text, truncated };
}
