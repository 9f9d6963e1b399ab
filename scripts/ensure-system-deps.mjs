// Installs the Debian packages the test suite needs when they are missing, so `npm test` passes on
// a fresh machine. Each package is checked by a file it provides; nothing is done when all exist.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const needed = [
  // Text rendered by the OCR test needs a font fontconfig can find.
  { pkg: 'fonts-dejavu-core', provides: '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf' },
  // The accuracy test classifies Fashion-MNIST test images.
  { pkg: 'dataset-fashion-mnist', provides: '/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz' },
  // The out-of-distribution tests show the Fashion-MNIST model real photos, and the OCR pipeline test reads a scanned
  // page (page.png): scikit-image's sample images.
  { pkg: 'python3-skimage', provides: '/usr/lib/python3/dist-packages/skimage/data/astronaut.png' },
  // The object detector's test finds the dog and the bicycle in darknet's sample photo.
  { pkg: 'darknet', provides: '/usr/share/darknet/data/dog.jpg' },
  // The Redis response cache tests start a real Redis server.
  { pkg: 'redis-server', provides: '/usr/bin/redis-server' },
  // The TLS tests make their certificates with the openssl command.
  { pkg: 'openssl', provides: '/usr/bin/openssl' },
  // The rolling-restart test puts three replicas behind a real nginx.
  { pkg: 'nginx', provides: '/usr/sbin/nginx' },
  // The sequence batching test streams speech rendered by espeak-ng through the Silero VAD model.
  { pkg: 'espeak-ng', provides: '/usr/bin/espeak-ng' },
  // The dashboard's end-to-end tests drive a headless Chromium (playwright-core, no downloaded browser).
  { pkg: 'chromium', provides: '/usr/bin/chromium' },
  // The Parquet reader's test compresses a file's pages as polars does by default, with the zstd command.
  { pkg: 'zstd', provides: '/usr/bin/zstd' },
];

/** Waits for the dpkg lock rather than failing when another apt (e.g. unattended upgrades) holds it. */
const WAIT_FOR_LOCK = ['-o', 'DPkg::Lock::Timeout=120'];
const ATTEMPTS = 3;

/** Runs apt-get, trying again when it fails (a lock held past the timeout, a mirror that hiccupped). */
function aptGet(args, env) {
  for (let attempt = 1; ; attempt++) {
    try {
      execFileSync('apt-get', [...WAIT_FOR_LOCK, ...args], { stdio: 'inherit', env });
      return;
    } catch (error) {
      if (attempt === ATTEMPTS) throw error;
      console.error(`apt-get ${args.join(' ')} failed (attempt ${attempt} of ${ATTEMPTS}); trying again in 10 s`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10_000);
    }
  }
}

const missing = needed.filter(({ provides }) => !existsSync(provides)).map(({ pkg }) => pkg);
if (missing.length > 0) {
  if (process.getuid?.() !== 0) {
    console.error(`missing Debian packages: ${missing.join(' ')} — install them with: sudo apt-get install -y ${missing.join(' ')}`);
    process.exit(1);
  }
  console.log(`installing Debian packages: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  aptGet(['update', '-qq'], env);
  aptGet(['install', '-y', '-qq', '--no-install-recommends', ...missing], env);
}
