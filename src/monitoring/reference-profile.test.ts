/**
 * Reference profiles: feature summaries on hand-checked data, and profiles written to and read back
 * from a temporary folder, whole, broken in one field at a time, of another format and oversized.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { VERSION } from '../version.js';
import {
  dataDigest,
  featureBin,
  readReferenceProfile,
  readReferenceProfileIfPresent,
  summariseFeature,
  writeReferenceProfile,
  MAX_REFERENCE_PROFILE_BYTES,
  REFERENCE_PROFILE_FILE,
  type ReferenceProfile,
} from './reference-profile.js';

const oneToHundred = Array.from({ length: 100 }, (_, index) => index + 1);

describe('summariseFeature', () => {
  test('1..100: deciles 10.9, 20.8, … 90.1 (type 7), ten values in each bin, all values as the sample', () => {
    const summary = summariseFeature(oneToHundred);
    const expectedEdges = [10.9, 20.8, 30.7, 40.6, 50.5, 60.4, 70.3, 80.2, 90.1];
    assert.equal(summary.binEdges.length, 9);
    summary.binEdges.forEach((edge, index) => assert.ok(Math.abs(edge - expectedEdges[index]) < 1e-9, `edge ${index}: ${edge}`));
    assert.deepEqual(summary.binCounts, new Array(10).fill(10));
    assert.deepEqual(summary.sample, oneToHundred);
    assert.deepEqual([summary.count, summary.mean, summary.min, summary.max], [100, 50.5, 1, 100]);
    // Population standard deviation of 1..n: √((n² − 1) / 12).
    assert.ok(Math.abs(summary.std - Math.sqrt(9999 / 12)) < 1e-9, `std ${summary.std}`);
  });

  test('depends on the values only, not on their order', () => {
    const shuffled = [...oneToHundred].sort((a, b) => ((a * 37) % 101) - ((b * 37) % 101));
    assert.notDeepEqual(shuffled, oneToHundred);
    assert.deepEqual(summariseFeature(shuffled), summariseFeature(oneToHundred));
  });

  test('keeps an evenly spaced sample of a long feature, both extremes included', () => {
    const values = Array.from({ length: 10_000 }, (_, index) => 10_000 - index);
    const { sample, count } = summariseFeature(values);
    assert.equal(count, 10_000);
    assert.equal(sample.length, 1000);
    assert.deepEqual([sample[0], sample[1], sample[999]], [1, 11, 10_000], 'every tenth-ish value, rounded to the nearest rank');
    assert.ok(sample.every((value, index) => index === 0 || value > sample[index - 1]), 'ascending');
    assert.equal(summariseFeature(values, 5).sample.length, 5);
    assert.throws(() => summariseFeature(values, 1), /sampleSize is 1; expected a whole number from 2 to 1000/);
  });

  test('ties: deciles equal to the one before are left out, so no bin is one nothing can fall into', () => {
    // 90 zeros and 1..10: deciles 1–8 are 0, the ninth interpolates to 0.1 between 0 and 1.
    const summary = summariseFeature([...new Array(90).fill(0), ...oneToHundred.slice(0, 10)]);
    assert.equal(summary.binEdges.length, 2);
    assert.equal(summary.binEdges[0], 0);
    assert.ok(Math.abs(summary.binEdges[1] - 0.1) < 1e-12, `second edge ${summary.binEdges[1]}`);
    assert.deepEqual(summary.binCounts, [90, 0, 10]);
    // Always 28 wide: one edge, every value in the bin up to it, the bin above left for wider images.
    const constant = summariseFeature(new Array(50).fill(28));
    assert.deepEqual([constant.binEdges, constant.binCounts, constant.std], [[28], [50, 0], 0]);
  });

  test('refuses no values and values that are not finite, saying which', () => {
    assert.throws(() => summariseFeature([]), /at least one value/);
    assert.throws(() => summariseFeature([1, 2, NaN]), /value 2 is NaN/);
    assert.throws(() => summariseFeature([Infinity]), /value 0 is Infinity/);
  });
});

test('featureBin puts a value equal to an edge in the bin below it', () => {
  const edges = [1, 2, 3];
  assert.deepEqual([0, 1, 1.5, 2, 2.5, 3, 4].map((value) => featureBin(edges, value)), [0, 0, 1, 1, 2, 2, 3]);
  assert.equal(featureBin([], 5), 0);
});

test('dataDigest tells record boundaries and order apart', () => {
  assert.match(dataDigest(['a.png', 'b.png']), /^sha256:[0-9a-f]{64}$/);
  assert.equal(dataDigest(['a.png', 'b.png']), dataDigest([Buffer.from('a.png'), 'b.png']));
  assert.notEqual(dataDigest(['ab', 'c']), dataDigest(['a', 'bc']));
  assert.notEqual(dataDigest(['a', 'b']), dataDigest(['b', 'a']));
});

function exampleProfile(): ReferenceProfile {
  return {
    format: 1,
    provenance: {
      created: '2025-01-02T03:04:05.678Z',
      model: 'fashion_mnist',
      modelVersion: '1',
      nereidVersion: VERSION,
      data: { source: '/data/fashion-mnist/val', digest: dataDigest(['0.png', '1.png']), examples: 100 },
    },
    features: {
      'input.brightness': summariseFeature(oneToHundred.map((value) => value / 400)),
      'output.confidence': summariseFeature(oneToHundred.map((value) => 0.5 + value / 200)),
    },
    classShares: { 'T-shirt/top': 0.25, Trouser: 0.75 },
    ood: {
      method: 'mahalanobis',
      tensor: '/fc1/Relu_output_0',
      pooling: 'none',
      classMeans: [[0.5, -1.25, 3], [], [1, 1, 1]],
      precision: [
        [1, 0, 0],
        [0, 0.6, 0],
        [0, 0, 0.8],
      ],
      threshold: 17.3,
      targetFalsePositiveRate: 0.05,
      heldOutFalsePositiveRate: 0.047,
    },
    calibration: {
      examples: 100,
      bins: [
        { lower: 0.5, upper: 0.9, count: 40, meanConfidence: 0.7, accuracy: 0.65 },
        { lower: 0.9, upper: 1, count: 60, meanConfidence: 0.96, accuracy: 0.95 },
      ],
      ece: 0.026,
    },
  };
}

describe('reading and writing reference profiles', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nereid-reference-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Writes `profile` as JSON, unchecked, as a hand edit or another tool might. */
  const planted = async (name: string, profile: unknown) => {
    const path = join(dir, name);
    await writeFile(path, JSON.stringify(profile));
    return path;
  };

  test('a profile comes back as it was written, with number arrays kept on one line and no temporary file left', async () => {
    const path = join(dir, REFERENCE_PROFILE_FILE);
    const profile = exampleProfile();
    await writeReferenceProfile(path, profile);
    assert.deepEqual(await readReferenceProfile(path), profile);
    const text = await readFile(path, 'utf8');
    assert.match(text, /"binCounts": \[10, 10, 10, 10, 10, 10, 10, 10, 10, 10\]/);
    assert.match(text, /\[0, 0\.6, 0\]/);
    assert.match(text, /\[0\.5, -1\.25, 3\]/);
    assert.ok(text.split('\n').length < 100, `${text.split('\n').length} lines`);
    assert.deepEqual(await readdir(dir), [REFERENCE_PROFILE_FILE]);
    // Optional blocks may be absent.
    const bare: ReferenceProfile = { format: 1, provenance: profile.provenance, features: profile.features };
    await writeReferenceProfile(path, bare);
    assert.deepEqual(await readReferenceProfile(path), bare);
  });

  test('a broken field is refused naming the file as shown and the field', async () => {
    const cases: [string, (profile: ReferenceProfile) => void, RegExp][] = [
      ['counts', (profile) => profile.features['input.brightness'].binCounts.pop(), /features\["input\.brightness"\]\.binCounts: expected 10 counts \(one more than binEdges\), got 9/],
      ['sample', (profile) => profile.features['output.confidence'].sample.reverse(), /features\["output\.confidence"\]\.sample\[1\]: .* the sample is sorted ascending/],
      ['width', (profile) => profile.ood!.precision[1].push(0), /ood\.precision\[1\]: has 4 values; the matrix has 3 rows/],
      ['class mean', (profile) => profile.ood!.classMeans[2].pop(), /ood\.classMeans\[2\]: has 2 values; precision is 3 wide/],
      ['method', (profile) => Object.assign(profile.ood!, { method: 'energy' }), /ood\.method: /],
      ['shares', (profile) => (profile.classShares!.Trouser = 0.7), /classShares: the shares do not add up to 1/],
      ['bins', (profile) => (profile.calibration!.bins[1].lower = 0.8), /calibration\.bins\[1\]: starts at 0\.8, inside the bin before it/],
      ['digest', (profile) => (profile.provenance.data.digest = 'md5:abc'), /provenance\.data\.digest: expected sha256: and 64 hex digits/],
      ['version', (profile) => (profile.provenance.modelVersion = 'latest'), /provenance\.modelVersion: expected a version number/],
      ['created', (profile) => (profile.provenance.created = 'yesterday'), /provenance\.created: /],
    ];
    for (const [name, breakIt, expected] of cases) {
      const profile = exampleProfile();
      breakIt(profile);
      const path = await planted(`${name}.json`, profile);
      await assert.rejects(readReferenceProfile(path, `models/fashion_mnist/1/${name}.json`), (error: Error) => {
        assert.match(error.message, new RegExp(`^models/fashion_mnist/1/${name}\\.json is not a reference profile: `), name);
        assert.match(error.message, expected, name);
        return true;
      });
      await assert.rejects(writeReferenceProfile(join(dir, 'never.json'), profile, 'never.json'), /^Error: refusing to write never\.json, which would not be a reference profile: /);
    }
    assert.ok(!(await readdir(dir)).includes('never.json'), 'nothing is written for a profile that is not one');
  });

  test('another format, JSON that is not JSON and a missing file are each said so', async () => {
    await assert.rejects(readReferenceProfile(await planted('format2.json', { ...exampleProfile(), format: 2 }), 'format2.json'), /^Error: format2\.json is a reference profile of format 2; this Nereid reads format 1/);
    await assert.rejects(readReferenceProfile(await planted('noformat.json', { features: {} }), 'noformat.json'), /noformat\.json is not a reference profile: format: /);
    // Not a profile at all: the first five fields, and how many more.
    const stranger = { format: 1, provenance: {}, features: { x: {} } };
    await assert.rejects(readReferenceProfile(await planted('stranger.json', stranger), 'stranger.json'), /^Error: stranger\.json is not a reference profile: ([^;]+; ){5}and \d+ more$/);
    const truncated = join(dir, 'truncated.json');
    await writeFile(truncated, JSON.stringify(exampleProfile()).slice(0, 200));
    await assert.rejects(readReferenceProfile(truncated, 'truncated.json'), (error: Error) => {
      assert.match(String(error), /^Error: truncated\.json is not valid JSON: /);
      assert.ok(error.cause instanceof SyntaxError, "the parser's error stays as the cause, for the log");
      return true;
    });
    await assert.rejects(readReferenceProfile(join(dir, 'absent.json'), 'models/m/1/reference.json'), (error: NodeJS.ErrnoException) => {
      assert.equal(error.code, 'ENOENT');
      assert.equal(error.message, 'cannot read models/m/1/reference.json: ENOENT');
      assert.equal((error.cause as NodeJS.ErrnoException).path, join(dir, 'absent.json'), "the system's error, with the path read, stays as the cause");
      return true;
    });
    assert.equal(await readReferenceProfileIfPresent(join(dir, 'absent.json')), undefined);
    assert.deepEqual(await readReferenceProfileIfPresent(await planted('present.json', exampleProfile())), exampleProfile());
  });

  test('a profile over the size bound is neither read nor written', async () => {
    const big = join(dir, 'big.json');
    // A valid profile padded with whitespace past the bound: refused for its size alone.
    await writeFile(big, JSON.stringify(exampleProfile()) + ' '.repeat(MAX_REFERENCE_PROFILE_BYTES));
    await assert.rejects(readReferenceProfile(big, 'models/m/1/reference.json'), /^Error: models\/m\/1\/reference\.json is \d+ bytes; a reference profile is at most 8388608$/);
    // The precision of a 1024-wide representation: about 20 MiB of JSON.
    const profile = exampleProfile();
    const width = 1024;
    profile.ood = {
      ...profile.ood!,
      classMeans: [new Array(width).fill(0.123456789)],
      precision: Array.from({ length: width }, (_, row) => Array.from({ length: width }, (_, column) => Math.sin(row * width + column))),
    };
    await assert.rejects(writeReferenceProfile(join(dir, 'huge.json'), profile, 'huge.json'), /^Error: refusing to write huge\.json: it would be \d+ bytes, and a reference profile is at most 8388608/);
    assert.ok(!(await readdir(dir)).some((name) => name.startsWith('huge')), 'nothing is left of it');
  });
});
