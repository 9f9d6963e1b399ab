/** From a detector's rows to labelled boxes: the resize undone for each resize mode, the threshold, per-class suppression. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeDetections, detectionOptionsSchema, nonMaxSuppression, toImagePixels, type DetectionGeometry } from './object-detection.js';

const geometry = (resize: DetectionGeometry['resize']): DetectionGeometry => ({ imageWidth: 800, imageHeight: 400, inputWidth: 512, inputHeight: 512, resize });

describe('toImagePixels', () => {
  test('stretch scales each axis by its own factor', () => {
    assert.deepEqual(toImagePixels([0, 0, 512, 256], geometry('stretch')), [0, 0, 800, 200]);
  });

  test('letterbox takes off the padding above and below, then scales back', () => {
    // 800×400 fits 512×256, centred: 128 rows of padding above.
    assert.deepEqual(toImagePixels([0, 128, 256, 384], geometry('letterbox')), [0, 0, 400, 400]);
    assert.deepEqual(toImagePixels([0, 0, 512, 100], geometry('letterbox')), [0, 0, 800, 0], 'padding is clipped away');
  });

  test('a shorter-side crop adds back the cut-off sides', () => {
    // 800×400 covers 1024×512, centred: 256 columns cut off on the left.
    assert.deepEqual(toImagePixels([0, 0, 512, 512], geometry('shorter_side_center_crop')), [200, 0, 600, 400]);
  });
});

describe('decodeDetections', () => {
  const labels = ['person', 'cat'];
  const options = detectionOptionsSchema.parse({});
  test('keeps rows at or above the threshold, best first, one box per overlapping object of a class', () => {
    const rows = Float32Array.from([
      ...[0, 128, 256, 384, 0.9, 1], // a cat
      ...[4, 130, 256, 380, 0.8, 1], // the same cat again
      ...[4, 130, 256, 380, 0.6, 0], // a person where the cat is: another class, kept
      ...[300, 200, 400, 300, 0.2, 0], // below the threshold
      ...[0, 0, 512, 100, 0.95, 0], // only padding
    ]);
    const found = decodeDetections(rows, geometry('letterbox'), labels, options);
    assert.deepEqual(
      found.map((detection) => [detection.label, detection.index, detection.score]),
      [
        ['cat', 1, 0.9],
        ['person', 0, 0.6],
      ],
    );
    assert.deepEqual(found[0].box, [0, 0, 400, 400]);
  });

  test('max_detections keeps the best; query text is checked with what arrived', () => {
    const boxes = [0.5, 0.9, 0.7].map((score, index) => ({ label: 'x', index, score, box: [0, 0, 1, 1] as [number, number, number, number] }));
    assert.deepEqual(nonMaxSuppression(boxes, 0.5, 2).map((box) => box.score), [0.9, 0.7]);
    assert.deepEqual(detectionOptionsSchema.parse({ threshold: '0.05', max_detections: '3' }), { threshold: 0.05, max_detections: 3, iou_threshold: 0.5 });
    assert.match(detectionOptionsSchema.safeParse({ threshold: 'high' }).error!.issues[0].message, /threshold must be a number from 0 to 1, got 'high'/);
  });
});
