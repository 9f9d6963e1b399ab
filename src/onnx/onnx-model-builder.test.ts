import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import {
  attr,
  buildOnnxModel,
  type AttributeValue,
  float16BitsToNumber,
  float32ToFloat16Bits,
  type OnnxElementType,
} from './onnx-model-builder.js';
import { addSubModel, identityModel, scaleModel, smallCnnModel, writeModel } from './test-models.js';

// How onnxruntime-node wants (and returns) each element type's data: the point of these
// cases is to pin that down for the backend, not just to exercise Identity.
const SAMPLES: Record<OnnxElementType, ort.Tensor['data']> = {
  float32: new Float32Array([1.5, -2, 0, 3.25, 1e10, -0.125]),
  float16: new Uint16Array([0x3c00, 0xc000, 0, 0x3e00, 0x7bff, 0x8001]), // raw half bits
  float64: new Float64Array([Math.PI, -1e300, 0, 2, 3, 4]),
  int8: new Int8Array([-128, -1, 0, 1, 2, 127]),
  int16: new Int16Array([-32768, -1, 0, 1, 2, 32767]),
  int32: new Int32Array([-(2 ** 31), -1, 0, 1, 2, 2 ** 31 - 1]),
  int64: new BigInt64Array([-(2n ** 63n), -1n, 0n, 1n, 2n ** 53n + 1n, 2n ** 63n - 1n]),
  uint8: new Uint8Array([0, 1, 2, 3, 128, 255]),
  uint16: new Uint16Array([0, 1, 2, 3, 40000, 65535]),
  uint32: new Uint32Array([0, 1, 2, 3, 2 ** 31, 2 ** 32 - 1]),
  uint64: new BigUint64Array([0n, 1n, 2n, 3n, 2n ** 63n, 2n ** 64n - 1n]),
  bool: new Uint8Array([1, 0, 1, 1, 0, 0]),
  string: ['hello', '', 'wörld', '日本', 'a b', 'z'],
};

const ALL_TYPES = Object.keys(SAMPLES) as OnnxElementType[];

function tensorMeta(meta: ort.InferenceSession.ValueMetadata): ort.InferenceSession.TensorValueMetadata {
  assert.ok(meta.isTensor, `${meta.name} should be a tensor`);
  return meta;
}

describe('buildOnnxModel identity models', () => {
  for (const type of ALL_TYPES) {
    it(`round-trips ${type} through onnxruntime`, async () => {
      const session = await ort.InferenceSession.create(identityModel(type));
      try {
        assert.deepEqual(session.inputNames, ['INPUT0']);
        assert.deepEqual(session.outputNames, ['OUTPUT0']);
        for (const meta of [session.inputMetadata[0], session.outputMetadata[0]]) {
          const t = tensorMeta(meta);
          assert.equal(t.type, type);
          assert.deepEqual(t.shape, ['batch', 'n']);
        }
        const input = new ort.Tensor(type, SAMPLES[type], [2, 3]);
        const { OUTPUT0: out } = await session.run({ INPUT0: input });
        assert.equal(out.type, type);
        assert.deepEqual(out.dims, [2, 3]);
        assert.equal(out.data.constructor, SAMPLES[type].constructor);
        assert.deepEqual(Array.from(out.data as ArrayLike<unknown>), Array.from(SAMPLES[type] as ArrayLike<unknown>));
      } finally {
        await session.release();
      }
    });
  }

  it('reports fixed, symbolic and unknown dimensions', async () => {
    const session = await ort.InferenceSession.create(identityModel('float32', [2, 'seq', null]));
    try {
      // ORT reports a dimension with neither value nor name as ''.
      assert.deepEqual(tensorMeta(session.inputMetadata[0]).shape, [2, 'seq', '']);
    } finally {
      await session.release();
    }
  });

  it('accepts boolean[] for bool and number[] for int64, but not number[] for float16', async () => {
    assert.deepEqual(Array.from(new ort.Tensor('bool', [true, false], [2]).data as Uint8Array), [1, 0]);
    assert.deepEqual(Array.from(new ort.Tensor('int64', [1, 2], [2]).data as BigInt64Array), [1n, 2n]);
    assert.throws(() => new ort.Tensor('float16', [1, 2], [2]));
  });
  it('truncates string elements at the first NUL (strings pass through as C strings)', async () => {
    // Pinned so a backend relying on it (binary BYTES cannot round-trip through ORT strings) notices a change.
    const session = await ort.InferenceSession.create(identityModel('string', ['n']));
    try {
      const { OUTPUT0: out } = await session.run({ INPUT0: new ort.Tensor('string', ['a\u0000b', 'c'], [2]) });
      assert.deepEqual(out.data, ['a', 'c']);
    } finally {
      await session.release();
    }
  });
});

describe('test models', () => {
  it('addSubModel adds and subtracts INT32 with a batch of 3', async () => {
    const session = await ort.InferenceSession.create(addSubModel());
    try {
      assert.deepEqual(session.inputNames, ['INPUT0', 'INPUT1']);
      assert.deepEqual(session.outputNames, ['OUTPUT0', 'OUTPUT1']);
      const meta = tensorMeta(session.inputMetadata[1]);
      assert.equal(meta.type, 'int32');
      assert.deepEqual(meta.shape, ['batch', 16]);
      const a = Int32Array.from({ length: 48 }, (_, i) => i);
      const b = Int32Array.from({ length: 48 }, (_, i) => 100 - 2 * i);
      const out = await session.run({
        INPUT0: new ort.Tensor('int32', a, [3, 16]),
        INPUT1: new ort.Tensor('int32', b, [3, 16]),
      });
      assert.deepEqual(out.OUTPUT0.dims, [3, 16]);
      assert.deepEqual(Array.from(out.OUTPUT0.data as Int32Array), Array.from(a, (x, i) => x + b[i]));
      assert.deepEqual(Array.from(out.OUTPUT1.data as Int32Array), Array.from(a, (x, i) => x - b[i]));
    } finally {
      await session.release();
    }
  });

  it('addSubModel without batch has shape [16]', async () => {
    const session = await ort.InferenceSession.create(addSubModel({ batch: false }));
    try {
      assert.deepEqual(tensorMeta(session.outputMetadata[0]).shape, [16]);
      const a = new Int32Array(16).fill(5);
      const out = await session.run({
        INPUT0: new ort.Tensor('int32', a, [16]),
        INPUT1: new ort.Tensor('int32', a, [16]),
      });
      assert.deepEqual(Array.from(out.OUTPUT0.data as Int32Array), new Array(16).fill(10));
      assert.deepEqual(Array.from(out.OUTPUT1.data as Int32Array), new Array(16).fill(0));
    } finally {
      await session.release();
    }
  });

  it('scaleModel doubles its input', async () => {
    const session = await ort.InferenceSession.create(scaleModel());
    try {
      assert.deepEqual(tensorMeta(session.inputMetadata[0]).shape, ['batch', 4]);
      const x = new Float32Array([1, -2, 0.5, 3, 4, 5, 6, 7]);
      const out = await session.run({ INPUT0: new ort.Tensor('float32', x, [2, 4]) });
      assert.deepEqual(out.OUTPUT0.dims, [2, 4]);
      assert.deepEqual(Array.from(out.OUTPUT0.data as Float32Array), Array.from(x, (v) => v * 2));
    } finally {
      await session.release();
    }
  });

  it('smallCnnModel yields deterministic probability rows', async () => {
    assert.deepEqual(smallCnnModel(), smallCnnModel());
    const session = await ort.InferenceSession.create(smallCnnModel());
    try {
      assert.deepEqual(tensorMeta(session.inputMetadata[0]).shape, ['batch', 1, 28, 28]);
      assert.deepEqual(tensorMeta(session.outputMetadata[0]).shape, ['batch', 10]);
      const image = Float32Array.from({ length: 2 * 28 * 28 }, (_, i) => (i % 28) / 28);
      const out = await session.run({ image: new ort.Tensor('float32', image, [2, 1, 28, 28]) });
      assert.deepEqual(out.probs.dims, [2, 10]);
      const probs = out.probs.data as Float32Array;
      for (let row = 0; row < 2; row++) {
        const sum = probs.subarray(row * 10, row * 10 + 10).reduce((s, p) => s + p, 0);
        assert.ok(Math.abs(sum - 1) < 1e-5, `row ${row} sums to ${sum}`);
      }
      // Identical images in the batch must give identical rows.
      assert.deepEqual(Array.from(probs.subarray(0, 10)), Array.from(probs.subarray(10, 20)));
      // Weights are not degenerate: the distribution is not uniform.
      assert.ok(Math.max(...probs.subarray(0, 10)) - Math.min(...probs.subarray(0, 10)) > 1e-3);
    } finally {
      await session.release();
    }
  });
});

describe('buildOnnxModel details', () => {
  it('encodes initializers of several types and metadata', async () => {
    const bytes = buildOnnxModel({
      inputs: [{ name: 'x', type: 'int64', shape: [3] }],
      outputs: [
        { name: 'y', type: 'int64', shape: [3] },
        { name: 'h', type: 'float16', shape: [2] },
        { name: 's', type: 'string', shape: [2] },
        { name: 'd', type: 'float64', shape: [2] },
      ],
      initializers: [
        { name: 'k', type: 'int64', dims: [3], values: [1n, -2n, 2n ** 40n] },
        { name: 'hc', type: 'float16', dims: [2], values: [1.5, -0.25] },
        { name: 'sc', type: 'string', dims: [2], values: ['foo', 'bär'] },
        { name: 'dc', type: 'float64', dims: [2], values: [0.1, 1e-300] },
      ],
      nodes: [
        { opType: 'Add', inputs: ['x', 'k'], outputs: ['y'] },
        { opType: 'Identity', inputs: ['hc'], outputs: ['h'] },
        { opType: 'Identity', inputs: ['sc'], outputs: ['s'] },
        { opType: 'Identity', inputs: ['dc'], outputs: ['d'] },
      ],
      metadata: { author: 'tests' },
    });
    const session = await ort.InferenceSession.create(bytes);
    try {
      const out = await session.run({ x: new ort.Tensor('int64', new BigInt64Array([10n, 20n, 30n]), [3]) });
      assert.deepEqual(Array.from(out.y.data as BigInt64Array), [11n, 18n, 30n + 2n ** 40n]);
      assert.deepEqual(Array.from(out.h.data as Uint16Array, float16BitsToNumber), [1.5, -0.25]);
      assert.deepEqual(out.s.data, ['foo', 'bär']);
      assert.deepEqual(Array.from(out.d.data as Float64Array), [0.1, 1e-300]);
    } finally {
      await session.release();
    }
  });

  it('writes FLOAT attributes when asked even for integral values', async () => {
    const leakyRelu = (alpha: AttributeValue) =>
      buildOnnxModel({
        inputs: [{ name: 'x', type: 'float32', shape: [2] }],
        outputs: [{ name: 'y', type: 'float32', shape: [2] }],
        nodes: [{ opType: 'LeakyRelu', inputs: ['x'], outputs: ['y'], attributes: { alpha } }],
      });
    // A plain integral number is written as INT, which ORT refuses for a FLOAT attribute.
    await assert.rejects(ort.InferenceSession.create(leakyRelu(2)));
    for (const [alpha, expected] of [
      [attr.float(2), -8],
      [0.5, -2],
    ] as const) {
      const session = await ort.InferenceSession.create(leakyRelu(alpha));
      try {
        const out = await session.run({ x: new ort.Tensor('float32', new Float32Array([-4, 4]), [2]) });
        assert.deepEqual(Array.from(out.y.data as Float32Array), [expected, 4]);
      } finally {
        await session.release();
      }
    }
  });

  it('rejects initializers whose value count does not match dims', () => {
    assert.throws(
      () =>
        buildOnnxModel({
          inputs: [],
          outputs: [{ name: 'c', type: 'float32', shape: [2] }],
          initializers: [{ name: 'c', type: 'float32', dims: [2], values: [1] }],
          nodes: [],
        }),
      /need 2 values/,
    );
  });

  it('converts float16 like IEEE round-to-nearest-even', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65520, 0x7c00], // rounds up to Inf
      [Infinity, 0x7c00],
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // halfway to zero: ties to even
      [1 + 2 ** -11, 0x3c00], // halfway between 1 and next: ties to even (down)
      [1 + 3 * 2 ** -11, 0x3c02], // halfway, ties to even (up)
    ];
    for (const [value, bits] of cases) assert.equal(float32ToFloat16Bits(value), bits, `f16(${value})`);
    assert.ok(Number.isNaN(float16BitsToNumber(float32ToFloat16Bits(NaN))));
    for (let bits = 0; bits < 0x7c00; bits += 37) assert.equal(float32ToFloat16Bits(float16BitsToNumber(bits)), bits);
  });
});

describe('writeModel', () => {
  it('writes the Triton repository layout', async () => {
    const repo = await mkdtemp(join(tmpdir(), 'nereid-onnx-'));
    try {
      const bytes = addSubModel();
      await writeModel(repo, 'simple', 1, bytes, 'name: "simple"\nbackend: "onnxruntime"\n', {
        'labels.txt': 'a\nb\n',
        'nested/dir/notes.txt': 'hi',
      });
      await writeModel(repo, 'simple', 3, scaleModel());
      assert.deepEqual((await readdir(join(repo, 'simple'))).sort(), ['1', '3', 'config.pbtxt', 'labels.txt', 'nested']);
      assert.deepEqual(new Uint8Array(await readFile(join(repo, 'simple', '1', 'model.onnx'))), bytes);
      assert.ok((await stat(join(repo, 'simple', '3', 'model.onnx'))).size > 0);
      assert.match(await readFile(join(repo, 'simple', 'config.pbtxt'), 'utf8'), /backend: "onnxruntime"/);
      assert.equal(await readFile(join(repo, 'simple', 'labels.txt'), 'utf8'), 'a\nb\n');
      assert.equal(await readFile(join(repo, 'simple', 'nested', 'dir', 'notes.txt'), 'utf8'), 'hi');

      await writeModel(repo, 'noconfig', 1, identityModel('string'));
      assert.deepEqual(await readdir(join(repo, 'noconfig')), ['1']);
      const session = await ort.InferenceSession.create(join(repo, 'noconfig', '1', 'model.onnx'));
      await session.release();
    } finally {
      await rm(repo, { recursive: true, force: true });
    }
  });
});
