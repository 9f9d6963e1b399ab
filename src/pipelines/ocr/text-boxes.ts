/**
 * Text boxes from a DB text detector's probability map, as PaddleOCR's DBPostProcess finds them:
 * the map thresholded, each connected region's minimum-area rotated rectangle, its mean
 * probability as the box score, the rectangle grown by the unclip ratio (the detector is trained
 * on shrunk text regions), and the boxes put in reading order.
 */

export interface Point {
  x: number;
  y: number;
}

/** Four corners, clockwise from the top-left (image coordinates: y grows downwards). */
export type Quad = [Point, Point, Point, Point];

export interface TextBox {
  points: Quad;
  /** Mean probability of the map inside the box before it was grown. */
  score: number;
}

export interface BoxSettings {
  /** A pixel is text when its probability is above this (PaddleOCR's det_db_thresh). */
  threshold: number;
  /** Boxes whose mean probability is below this are dropped (det_db_box_thresh). */
  boxThreshold: number;
  /** How much a box grows: by area × ratio / perimeter on every side (det_db_unclip_ratio). */
  unclipRatio: number;
  /** Regions considered at most, the largest first. */
  maxCandidates: number;
}

/** PaddleOCR's smallest side of a box, in map pixels, before it is grown. */
const MIN_SIDE = 3;

/** A rotated rectangle: centre, unit axes and half extents along them. */
interface Rectangle {
  centre: Point;
  u: Point;
  v: Point;
  halfU: number;
  halfV: number;
}

/**
 * Connected regions (8-neighbourhood) of the pixels above the threshold, each as the points whose
 * convex hull is the region's: the leftmost and rightmost pixel of each of its rows.
 */
function regions(map: Float32Array, width: number, height: number, threshold: number): Point[][] {
  const seen = new Uint8Array(width * height);
  const stack: number[] = [];
  const found: Point[][] = [];
  for (let start = 0; start < map.length; start++) {
    if (seen[start] || !(map[start] > threshold)) continue;
    seen[start] = 1;
    stack.push(start);
    const rows = new Map<number, [number, number]>();
    while (stack.length > 0) {
      const pixel = stack.pop()!;
      const x = pixel % width;
      const y = (pixel - x) / width;
      const row = rows.get(y);
      if (!row) rows.set(y, [x, x]);
      else if (x < row[0]) row[0] = x;
      else if (x > row[1]) row[1] = x;
      for (let dy = -1; dy <= 1; dy++) {
        const ny = y + dy;
        if (ny < 0 || ny >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx;
          if (nx < 0 || nx >= width) continue;
          const next = ny * width + nx;
          if (seen[next] || !(map[next] > threshold)) continue;
          seen[next] = 1;
          stack.push(next);
        }
      }
    }
    const points: Point[] = [];
    for (const [y, [left, right]] of rows) {
      points.push({ x: left, y });
      if (right !== left) points.push({ x: right, y });
    }
    found.push(points);
  }
  return found;
}

const cross = (o: Point, a: Point, b: Point) => (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x);

/** Andrew's monotone chain: the convex hull, counter-clockwise in x-right/y-up terms. */
function convexHull(points: Point[]): Point[] {
  const sorted = [...points].sort((a, b) => a.x - b.x || a.y - b.y);
  if (sorted.length <= 2) return sorted;
  const lower: Point[] = [];
  for (const point of sorted) {
    while (lower.length >= 2 && cross(lower[lower.length - 2], lower[lower.length - 1], point) <= 0) lower.pop();
    lower.push(point);
  }
  const upper: Point[] = [];
  for (let index = sorted.length - 1; index >= 0; index--) {
    const point = sorted[index];
    while (upper.length >= 2 && cross(upper[upper.length - 2], upper[upper.length - 1], point) <= 0) upper.pop();
    upper.push(point);
  }
  return [...lower.slice(0, -1), ...upper.slice(0, -1)];
}

/** The smallest rectangle around a convex hull: one of its sides lies along an edge of the hull (rotating calipers). */
function minimumAreaRectangle(hull: Point[]): Rectangle {
  let best: Rectangle | undefined;
  let bestArea = Infinity;
  const edges = hull.length === 1 ? 1 : hull.length;
  for (let index = 0; index < edges; index++) {
    const a = hull[index];
    const b = hull[(index + 1) % hull.length];
    const length = Math.hypot(b.x - a.x, b.y - a.y);
    const u = length > 0 ? { x: (b.x - a.x) / length, y: (b.y - a.y) / length } : { x: 1, y: 0 };
    const v = { x: -u.y, y: u.x };
    let minU = Infinity;
    let maxU = -Infinity;
    let minV = Infinity;
    let maxV = -Infinity;
    for (const point of hull) {
      const alongU = point.x * u.x + point.y * u.y;
      const alongV = point.x * v.x + point.y * v.y;
      minU = Math.min(minU, alongU);
      maxU = Math.max(maxU, alongU);
      minV = Math.min(minV, alongV);
      maxV = Math.max(maxV, alongV);
    }
    const area = (maxU - minU) * (maxV - minV);
    if (area < bestArea) {
      bestArea = area;
      const midU = (minU + maxU) / 2;
      const midV = (minV + maxV) / 2;
      best = { centre: { x: midU * u.x + midV * v.x, y: midU * u.y + midV * v.y }, u, v, halfU: (maxU - minU) / 2, halfV: (maxV - minV) / 2 };
    }
  }
  return best!;
}

/** The rectangle's corners, clockwise from the top-left as PaddleOCR orders them (get_mini_boxes). */
function cornersOf(rectangle: Rectangle, grow = 0): Quad {
  const { centre, u, v } = rectangle;
  const halfU = rectangle.halfU + grow;
  const halfV = rectangle.halfV + grow;
  const corner = (su: number, sv: number) => ({ x: centre.x + su * halfU * u.x + sv * halfV * v.x, y: centre.y + su * halfU * u.y + sv * halfV * v.y });
  return orderClockwise([corner(-1, -1), corner(1, -1), corner(1, 1), corner(-1, 1)]);
}

/** The two leftmost points give the left side (top one first), the two others the right side. */
export function orderClockwise(points: Point[]): Quad {
  const byX = [...points].sort((a, b) => a.x - b.x);
  const [topLeft, bottomLeft] = byX[0].y <= byX[1].y ? [byX[0], byX[1]] : [byX[1], byX[0]];
  const [topRight, bottomRight] = byX[2].y <= byX[3].y ? [byX[2], byX[3]] : [byX[3], byX[2]];
  return [topLeft, topRight, bottomRight, bottomLeft];
}

/** Mean probability of the map's pixels inside the quadrilateral (PaddleOCR's "fast" box score). */
function boxScore(map: Float32Array, width: number, height: number, quad: Quad): number {
  const xs = quad.map((point) => point.x);
  const ys = quad.map((point) => point.y);
  const left = Math.max(0, Math.floor(Math.min(...xs)));
  const right = Math.min(width - 1, Math.ceil(Math.max(...xs)));
  const top = Math.max(0, Math.floor(Math.min(...ys)));
  const bottom = Math.min(height - 1, Math.ceil(Math.max(...ys)));
  let sum = 0;
  let count = 0;
  let boundsSum = 0;
  for (let y = top; y <= bottom; y++) {
    for (let x = left; x <= right; x++) {
      const value = map[y * width + x];
      boundsSum += value;
      const point = { x, y };
      // Inside a clockwise quadrilateral (y down): on the inner side of every edge, its boundary included.
      let inside = true;
      for (let index = 0; index < 4 && inside; index++) inside = cross(quad[index], quad[(index + 1) % 4], point) >= -1e-6;
      if (inside) {
        sum += value;
        count += 1;
      }
    }
  }
  if (count > 0) return sum / count;
  const area = (right - left + 1) * (bottom - top + 1);
  return area > 0 ? boundsSum / area : 0;
}

/**
 * The text boxes of one probability map (width × height, row by row), in the map's pixel
 * coordinates, in no particular order.
 */
export function findTextBoxes(map: Float32Array, width: number, height: number, settings: BoxSettings): TextBox[] {
  const candidates = regions(map, width, height, settings.threshold)
    .sort((a, b) => b.length - a.length)
    .slice(0, settings.maxCandidates);
  const boxes: TextBox[] = [];
  for (const points of candidates) {
    const rectangle = minimumAreaRectangle(convexHull(points));
    if (Math.min(rectangle.halfU, rectangle.halfV) * 2 < MIN_SIDE) continue;
    const score = boxScore(map, width, height, cornersOf(rectangle));
    if (score < settings.boxThreshold) continue;
    // Offsetting a rectangle by d (pyclipper's unclip) gives one d larger on every side.
    const sideU = rectangle.halfU * 2;
    const sideV = rectangle.halfV * 2;
    const distance = (sideU * sideV * settings.unclipRatio) / (2 * (sideU + sideV));
    if (Math.min(sideU, sideV) + 2 * distance < MIN_SIDE + 2) continue;
    boxes.push({ points: cornersOf(rectangle, distance), score });
  }
  return boxes;
}

/**
 * Boxes moved from the map's coordinates to the image's (scaled, rounded, kept inside it), those
 * whose sides are 3 pixels or less dropped, in reading order: top to bottom, and left to right
 * among boxes whose tops are within 10 pixels (PaddleOCR's sorted_boxes).
 */
export function toImageBoxes(boxes: readonly TextBox[], map: { width: number; height: number }, image: { width: number; height: number }): TextBox[] {
  const scaleX = image.width / map.width;
  const scaleY = image.height / map.height;
  const placed = boxes
    .map((box) => ({
      score: box.score,
      points: orderClockwise(
        box.points.map((point) => ({
          x: Math.min(image.width - 1, Math.max(0, Math.round(point.x * scaleX))),
          y: Math.min(image.height - 1, Math.max(0, Math.round(point.y * scaleY))),
        })),
      ),
    }))
    .filter(({ points: [topLeft, topRight, , bottomLeft] }) => {
      const boxWidth = Math.trunc(Math.hypot(topRight.x - topLeft.x, topRight.y - topLeft.y));
      const boxHeight = Math.trunc(Math.hypot(bottomLeft.x - topLeft.x, bottomLeft.y - topLeft.y));
      return boxWidth > 3 && boxHeight > 3;
    })
    .sort((a, b) => a.points[0].y - b.points[0].y || a.points[0].x - b.points[0].x);
  for (let index = 0; index < placed.length - 1; index++) {
    for (let at = index; at >= 0; at--) {
      const [upper, lower] = [placed[at], placed[at + 1]];
      if (Math.abs(lower.points[0].y - upper.points[0].y) < 10 && lower.points[0].x < upper.points[0].x) {
        placed[at] = lower;
        placed[at + 1] = upper;
      } else {
        break;
      }
    }
  }
  return placed;
}
