// Nereid's preinstall, in a project that installs it: keeps onnxruntime-node's postinstall from downloading CUDA.
//
// On linux x64 that postinstall fetches the CUDA and TensorRT provider libraries from NuGet (hundreds of MB) unless
// they are already in its bin folder or the installer passed `--onnxruntime-node-install=skip`, set the npm config
// key or the environment variable ONNXRUNTIME_NODE_INSTALL. Those settings belong to the project that installs Nereid,
// not to a package it depends on, so without this an `npm install` on a machine that reaches only the npm registry
// fails, and elsewhere it downloads what Nereid (CPU by default) never loads. npm runs every package's preinstall
// before any postinstall, so marking those files as present here makes the download skip itself: each missing one
// gets a small placeholder (not a library; loading it fails, and a model asking for CUDA then runs on CPU with that
// reason logged). Whoever set one of onnxruntime-node's own settings has chosen, and nothing is written. For CUDA:
//   ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node      (downloads them, over the placeholders)
import { existsSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';
import { dirname, join } from 'node:path';

const chosen = ['ONNXRUNTIME_NODE_INSTALL', 'npm_config_onnxruntime_node_install', 'ONNXRUNTIME_NODE_INSTALL_CUDA', 'npm_config_onnxruntime_node_install_cuda'];
if (chosen.some((name) => process.env[name])) process.exit(0);

const require = createRequire(import.meta.url);
let root;
try {
  root = dirname(require.resolve('onnxruntime-node/package.json'));
} catch {
  process.exit(0); // not installed beside Nereid: nothing would download
}

// onnxruntime-node's own list of what its postinstall downloads, per platform, so that a new version's list is followed.
const metadata = require(join(root, 'script', 'install-metadata.js'));
const napi = require(join(root, 'package.json')).binary?.napi_versions?.[0] ?? 6;
const target = `${platform()}/${arch()}`;
const folder = join(root, 'bin', `napi-v${napi}`, target);
const placeholder =
  'Not a library: a placeholder that Nereid wrote at install time so that onnxruntime-node would not download its CUDA\n' +
  'provider libraries. To install them: ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node\n';
for (const manifest of metadata.requirements?.[target] ?? []) {
  for (const file of Object.keys(metadata.manifests?.[`${target}:${manifest}`] ?? {})) {
    const path = join(folder, file);
    if (existsSync(path)) continue;
    writeFileSync(path, placeholder);
  }
}
