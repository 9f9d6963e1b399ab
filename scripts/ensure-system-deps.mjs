// Installs the Debian packages the test suite needs when they are missing, so `npm test` passes on
// a fresh machine. Each package is checked by a file it provides; nothing is done when all exist.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const needed = [
  // Text rendered by the OCR test needs a font fontconfig can find.
  { pkg: 'fonts-dejavu-core', provides: '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf' },
  // The accuracy test classifies Fashion-MNIST test images.
  { pkg: 'dataset-fashion-mnist', provides: '/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz' },
  // The Redis response cache tests start a real Redis server.
  { pkg: 'redis-server', provides: '/usr/bin/redis-server' },
];

const missing = needed.filter(({ provides }) => !existsSync(provides)).map(({ pkg }) => pkg);
if (missing.length > 0) {
  if (process.getuid?.() !== 0) {
    console.error(`missing Debian packages: ${missing.join(' ')} — install them with: sudo apt-get install -y ${missing.join(' ')}`);
    process.exit(1);
  }
  console.log(`installing Debian packages: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: 'inherit', env });
}
