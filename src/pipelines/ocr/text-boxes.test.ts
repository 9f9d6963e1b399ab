import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cropQuad, rotateHalf } from './line-image.js';
import { findTextBoxes, toImageBoxes, type Quad } from './text-boxes.js';

const SETTINGS = { threshold: 0.3, boxThreshold: 0.6, unclipRatio: 1.5, maxCandidates: 1000 };

/** A map of `width` × `height` with probability 0.9 inside each rectangle (left, top, right, bottom inclusive). */
function mapWith(width: number, height: number, rectangles: [number, number, number, number][]): Float32Array {
  const map = new Float32Array(width * height);
  for (const [left, top, right, bottom] of rectangles) {
    for (let y = top; y <= bottom; y++) for (let x = left; x <= right; x++) map[y * width + x] = 0.9;
  }
  return map;
}

test('a region becomes its rectangle grown by area × ratio / perimeter on every side, corners clockwise from the top-left', () => {
  // 41 × 11 pixel centres span 40 × 10: grown by 40·10·1.5 / 100 = 6.
  const [box] = findTextBoxes(mapWith(100, 40, [[20, 10, 60, 20]]), 100, 40, SETTINGS);
  assert.ok(Math.abs(box.score - 0.9) < 1e-6);
  const expected = [[14, 4], [66, 4], [66, 26], [14, 26]];
  box.points.forEach((point, index) => {
    assert.ok(Math.abs(point.x - expected[index][0]) < 1e-6 && Math.abs(point.y - expected[index][1]) < 1e-6, JSON.stringify(box.points));
  });
});

test('a slanted region gives a rotated box; specks, faint regions and a blank map give none', () => {
  const width = 120;
  const height = 80;
  const map = new Float32Array(width * height);
  // A band rising to the right at 1 in 4.
  for (let x = 10; x < 110; x++) for (let y = 0; y < 8; y++) map[(50 - Math.round(x / 4) + y) * width + x] = 0.9;
  map[5 * width + 5] = 0.9; // a speck
  for (let x = 60; x < 100; x++) for (let y = 60; y < 70; y++) map[y * width + x] = 0.4; // text-ish, but not sure enough
  const boxes = findTextBoxes(map, width, height, SETTINGS);
  assert.equal(boxes.length, 1);
  const [topLeft, topRight] = boxes[0].points;
  const slope = (topRight.y - topLeft.y) / (topRight.x - topLeft.x);
  assert.ok(Math.abs(slope + 0.25) < 0.03, `slope ${slope}`);
  assert.deepEqual(findTextBoxes(new Float32Array(width * height), width, height, SETTINGS), []);
});

test('boxes are scaled to the image and put in reading order: top to bottom, left to right along a line', () => {
  const map = mapWith(200, 100, [
    [120, 52, 180, 62],
    [10, 10, 90, 20],
    [10, 54, 100, 64],
  ]);
  const boxes = toImageBoxes(findTextBoxes(map, 200, 100, SETTINGS), { width: 200, height: 100 }, { width: 400, height: 200 });
  assert.deepEqual(
    boxes.map((box) => box.points[0]),
    [
      { x: 7, y: 7 },
      { x: 7, y: 95 },
      { x: 227, y: 91 },
    ],
  );
});

test('a quadrilateral is cut out and straightened; a tall one is turned a quarter; turning half twice gives the image back', () => {
  const width = 8;
  const height = 6;
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set([x * 30, y * 40, 7], (y * width + x) * 3);
  const image = { data, width, height };
  const quad: Quad = [
    { x: 2, y: 1 },
    { x: 6, y: 1 },
    { x: 6, y: 3 },
    { x: 2, y: 3 },
  ];
  const crop = cropQuad(image, quad);
  assert.deepEqual([crop.width, crop.height], [4, 2]);
  // Pixel (0, 0) of the crop is the image's (2, 1).
  assert.deepEqual([...crop.data.subarray(0, 3)], [60, 40, 7]);
  const tall = cropQuad(image, [
    { x: 1, y: 0 },
    { x: 3, y: 0 },
    { x: 3, y: 6 },
    { x: 1, y: 6 },
  ]);
  assert.deepEqual([tall.width, tall.height], [6, 2]);
  // Turned counter-clockwise: the top-right pixel of the cut (image (2, 0)) is now the top-left.
  assert.deepEqual([...tall.data.subarray(0, 3)], [60, 0, 7]);
  assert.deepEqual(rotateHalf(rotateHalf(image)), image);
  assert.deepEqual([...rotateHalf(image).data.subarray(0, 3)], [210, 200, 7]);
});
