/**
 * The chart renderer of test/support/helm-template.ts behaves as Helm does on the subset the chart uses, and refuses
 * what it does not implement instead of rendering it wrong.
 */
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { mergeValues, renderChart } from './support/helm-template.js';

const folders: string[] = [];
after(() => Promise.all(folders.map((folder) => rm(folder, { recursive: true, force: true }))));

/** A one-template chart, rendered; returns the objects. */
async function render(template: string, values: Record<string, unknown> = {}, helpers = ''): Promise<Record<string, unknown>[]> {
  const chart = await mkdtemp(join(tmpdir(), 'nereid-chart-'));
  folders.push(chart);
  await mkdir(join(chart, 'templates'));
  await writeFile(join(chart, 'Chart.yaml'), 'apiVersion: v2\nname: demo\nversion: 1.2.3\nappVersion: "4.5"\n');
  await writeFile(join(chart, 'values.yaml'), 'size: 268435456\nname: web\nports: { http: 80, grpc: 81 }\nflags: []\n');
  await writeFile(join(chart, 'templates', '_helpers.tpl'), helpers);
  await writeFile(join(chart, 'templates', 'object.yaml'), template);
  return renderChart(chart, { values, releaseName: 'rel' }).map(({ object }) => object);
}

test('trim markers, if / else if / else, with, and include with its own dot', async () => {
  const template = `
a: {{- if eq .Values.name "api" }} api {{- else if eq .Values.name "web" }} {{ include "greet" .Values.name }} {{- else }} other {{- end }}
b: {{ with .Values.missing }}{{ . }}{{ else }}none{{ end }}
c: {{ .Chart.Name }}-{{ .Chart.AppVersion }}-{{ .Release.Name }}
`;
  const [object] = await render(template, {}, '{{- define "greet" -}}hello-{{ . }}{{- end }}');
  assert.deepEqual(object, { a: 'hello-web', b: 'none', c: 'demo-4.5-rel' });
});

test('range over a map goes in key order with $key, $value, and $ reaches the root inside it', async () => {
  const [object] = await render(`ports:\n{{- range $name, $port := .Values.ports }}\n  - {{ $name }}-{{ $port }}-{{ $.Values.name }}\n{{- end }}\n`);
  assert.deepEqual(object, { ports: ['grpc-81-web', 'http-80-web'] });
});

test('toYaml | nindent, quote, default, add, and values merged as -f merges them', async () => {
  const template = `spec:\n  flags: {{- toYaml .Values.flags | nindent 4 }}\n  name: {{ .Values.other | default "fallback" | quote }}\n  total: {{ add 1 2 .Values.ports.http }}\n`;
  const [object] = await render(template, { flags: ['--a', 'no'] });
  assert.deepEqual(object, { spec: { flags: ['--a', 'no'], name: 'fallback', total: 83 } });
  assert.deepEqual(mergeValues({ a: { b: 1, c: 2 }, d: [1] }, { a: { c: 3 }, d: [2], e: null }), { a: { b: 1, c: 3 }, d: [2] });
  assert.deepEqual(mergeValues({ a: 1, e: 2 }, { e: null }), { a: 1 });
});

test('numbers print as Go prints float64 values, so a large one needs int64 as it does in Helm', async () => {
  const [object] = await render(`plain: "{{ .Values.size }}"\nwhole: "{{ .Values.size | int64 }}"\nsmall: "{{ .Values.ports.http }}"\n`);
  assert.deepEqual(object, { plain: '2.68435456e+08', whole: '268435456', small: '80' });
  await assert.rejects(render(`size: {{ printf "%d" .Values.size }}\n`), /printf %d of 268435456: pipe it through int64/);
});

test('YAML is read as 1.1, as Kubernetes reads it: an unquoted no is a boolean', async () => {
  const [object] = await render(`quoted: "no"\nbare: no\n`);
  assert.deepEqual(object, { quoted: 'no', bare: false });
});

test('required fails with its message; functions, actions and unclosed blocks outside the subset are refused', async () => {
  await assert.rejects(render(`a: {{ required "name it" .Values.unset }}\n`), /name it/);
  await assert.rejects(render(`a: {{ .Values.name | upper }}\n`), /function 'upper' is outside the subset/);
  await assert.rejects(render(`a: {{ template "x" . }}\n`), /\{\{ template \}\} is outside the subset/);
  await assert.rejects(render(`{{ if .Values.name }}\na: 1\n`), /a block is not closed/);
  await assert.rejects(render(`a: {{ .Values.ports }}\n`), /prints a map; pipe it through toYaml/);
});
