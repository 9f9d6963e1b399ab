/**
 * The images the README's first examples post give the answers it shows: a Fashion-MNIST sneaker
 * and bag are classified as such, a photo of a cat is flagged out of distribution with low
 * confidence rather than passed off as a garment, and the scanned page's lines are read.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { pino } from 'pino';
import { createServer } from '../src/server/create-server.js';

test('README examples: sneaker and bag are recognised, the cat is flagged out of distribution', async (t) => {
  const server = await (await createServer({ modelRepository: 'models', modelControlMode: 'explicit', loadModels: ['fashion_mnist'], logger: pino({ level: 'silent' }) })).start();
  t.after(() => server.close());
  const classify = async (file: string) => (await server.classify('fashion_mnist', [await readFile(`examples/images/${file}`)])).results[0]!;
  const sneaker = await classify('sneaker.png');
  assert.equal(sneaker.predictions[0]!.label, 'Sneaker');
  assert.equal(sneaker.ood?.out_of_distribution, false);
  assert.equal((await classify('bag.png')).predictions[0]!.label, 'Bag');
  const cat = await classify('cat.jpg');
  assert.equal(cat.ood?.out_of_distribution, true, 'a photo is nothing like a 28×28 garment thumbnail');
  assert.equal(cat.confidence?.low_confidence, true);
});

test('README example: the ocr pipeline reads the lines of the scanned page', async (t) => {
  const server = await (await createServer({ modelRepository: 'models', modelControlMode: 'explicit', loadModels: ['ocr'], logger: pino({ level: 'silent' }) })).start();
  t.after(() => server.close());
  const response = await server.infer({ model: 'ocr', inputs: [{ name: 'image', datatype: 'BYTES', shape: [1], data: [await readFile('examples/images/page.png')] }] });
  const text = (response.outputs.find((output) => output.name === 'text')!.data as Buffer[]).map(String);
  assert.ok(text.includes('Let us first determine markers of the coins and the'), JSON.stringify(text));
  assert.ok(text.includes('histogram of grey values:'), JSON.stringify(text));
  assert.match(text[0]!, /^Region-based ?segmentation$/);
});
