#!/usr/bin/python3
# Train a small CNN on Fashion-MNIST, calibrate it (softmax temperature + low-confidence threshold) on a held-out
# validation set, and export it to the bundled model repository as models/fashion_mnist/1/model.onnx.
#
# Run with Debian's Python, which has python3-torch (1.13) and numpy -- NOT the pyenv `python3` first on PATH:
#
#     /usr/bin/python3 examples/fashion-mnist/train.py            # from the repository root
#
# Data: the idx gz files of Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist), read with gzip + numpy
# (no torchvision). Override the folder with FASHION_MNIST_DIR, the output with --output.
# Deterministic: everything is seeded and the CPU kernels are deterministic, so a rerun reproduces the same weights.
# Then check the exported file in-process with onnxruntime-node: `node examples/fashion-mnist/evaluate.mjs`.
import argparse
import gzip
import math
import os
import random
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA_DIR = os.environ.get('FASHION_MNIST_DIR', '/usr/share/datasets/fashion-mnist')
ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
LABELS = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']
VALIDATION = 5000  # the last 5,000 training images
ECE_BINS = 15
THRESHOLDS = [0.5, 0.6, 0.7]
FLAGGED_ACCURACY_LIMIT = 0.60  # a low-confidence flag should mark predictions that are more likely wrong than usable


def read_idx(name):
    """An idx file (gzipped): big-endian magic (0x0000, dtype code 0x08 = uint8, ndim), ndim uint32 sizes, data."""
    with gzip.open(os.path.join(DATA_DIR, name), 'rb') as f:
        raw = f.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f'{name}: not an unsigned-byte idx file')
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], 'big') for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != math.prod(shape):
        raise ValueError(f'{name}: {data.size} bytes of data for shape {shape}')
    return data.reshape(shape)


class Net(nn.Module):
    """conv 1->32 3x3 + BN + ReLU + maxpool, conv 32->64 3x3 + BN + ReLU + maxpool, dropout, FC 3136 -> 10 logits."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.dropout = nn.Dropout(0.3)
        self.fc = nn.Linear(64 * 7 * 7, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)  # 32 x 14 x 14
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)  # 64 x 7 x 7
        return self.fc(self.dropout(torch.flatten(x, 1)))


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


@torch.no_grad()
def logits_of(model, x, batch=1000):
    model.eval()
    return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])


def nll(logits, y, temperature=1.0):
    return F.cross_entropy(logits / temperature, y).item()


def ece(logits, y, temperature=1.0, bins=ECE_BINS):
    """Expected calibration error: |accuracy - mean confidence| per equal-width confidence bin, weighted by bin size."""
    confidence, predicted = F.softmax(logits / temperature, dim=1).max(dim=1)
    correct = (predicted == y).float()
    edges = torch.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            total += in_bin.float().mean().item() * abs(correct[in_bin].mean().item() - confidence[in_bin].mean().item())
    return total


def fit_temperature(logits, y):
    """The T > 0 minimising the NLL of softmax(logits / T); LBFGS on log T (keeps T positive), checked by a grid."""
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn='strong_wolfe')

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    t = log_t.exp().item()
    grid = np.arange(0.5, 3.0, 0.001)
    t_grid = float(grid[np.argmin([nll(logits, y, g) for g in grid])])
    assert abs(t - t_grid) < 0.01, f'LBFGS temperature {t} disagrees with the grid search {t_grid}'
    return t


def threshold_table(logits, y, temperature, thresholds):
    probability, predicted = F.softmax(logits / temperature, dim=1).max(dim=1)
    correct = predicted == y
    rows = []
    for threshold in thresholds:
        flagged = probability < threshold
        rows.append({
            'threshold': threshold,
            'flagged': flagged.float().mean().item(),
            'count': int(flagged.sum()),
            'flagged_accuracy': correct[flagged].float().mean().item() if flagged.any() else float('nan'),
            'kept_accuracy': correct[~flagged].float().mean().item(),
            'errors_caught': (flagged & ~correct).sum().item() / max(1, (~correct).sum().item()),
        })
    return rows


def print_table(title, rows):
    print(f'\n{title}')
    print('  top-1 prob < | flagged          | accuracy flagged | accuracy kept | share of errors flagged')
    for r in rows:
        print(f"  {r['threshold']:11.2f}  | {r['flagged'] * 100:5.2f}% ({r['count']:4d}) | {r['flagged_accuracy'] * 100:15.2f}% |"
              f" {r['kept_accuracy'] * 100:12.2f}% | {r['errors_caught'] * 100:6.2f}%")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--epochs', type=int, default=9)
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--lr', type=float, default=3e-3)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--output', default=os.path.join(ROOT, 'models', 'fashion_mnist', '1', 'model.onnx'))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    seed_everything(args.seed)

    train_images = read_idx('train-images-idx3-ubyte.gz')
    train_labels = read_idx('train-labels-idx1-ubyte.gz')
    test_images = read_idx('t10k-images-idx3-ubyte.gz')
    test_labels = read_idx('t10k-labels-idx1-ubyte.gz')
    assert train_images.shape == (60000, 28, 28) and test_images.shape == (10000, 28, 28)

    # Hold out the last 5,000 training images; the normalisation statistics come from the remaining training split only.
    x_train, y_train = train_images[:-VALIDATION], train_labels[:-VALIDATION]
    x_val, y_val = train_images[-VALIDATION:], train_labels[-VALIDATION:]
    pixels = x_train.astype(np.float64) / 255.0
    mean, std = float(pixels.mean()), float(pixels.std())
    print(f'train {len(x_train)}, validation {len(x_val)}, test {len(test_images)} images')
    print(f'normalisation (training split, pixels/255): mean {mean:.7f} std {std:.7f}')

    def tensor(images):  # same arithmetic as the server and evaluate.mjs: float32(pixel * (1/255)), then (x - mean) / std
        x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1) * np.float32(1 / 255)
        return (x - np.float32(mean)) / np.float32(std)

    xt, yt = tensor(x_train), torch.from_numpy(y_train.astype(np.int64))
    xv, yv = tensor(x_val), torch.from_numpy(y_val.astype(np.int64))
    xs, ys = tensor(test_images), torch.from_numpy(test_labels.astype(np.int64))

    model = Net()
    parameters = sum(p.numel() for p in model.parameters())
    print(f'model: {parameters} parameters ({parameters * 4 / 1024:.0f} KiB of FP32 weights)')

    steps_per_epoch = math.ceil(len(xt) / args.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch)
    generator = torch.Generator().manual_seed(args.seed)

    started = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(xt), generator=generator)
        total_loss = 0.0
        for i in range(0, len(xt), args.batch_size):
            index = order[i:i + args.batch_size]
            x, y = xt[index], yt[index]
            # Augmentation: random horizontal flips (garments are roughly left-right symmetric).
            flip = torch.rand(len(x), generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(index)
        val_accuracy = (logits_of(model, xv).argmax(1) == yv).float().mean().item()
        print(f'epoch {epoch:2d}: train loss {total_loss / len(xt):.4f}, validation accuracy {val_accuracy * 100:.2f}%, '
              f'{time.perf_counter() - started:.0f}s', flush=True)
    train_seconds = time.perf_counter() - started
    print(f'training time: {train_seconds:.0f}s ({args.epochs} epochs, {args.threads} threads)')

    model.eval()
    val_logits, test_logits = logits_of(model, xv), logits_of(model, xs)
    val_accuracy = (val_logits.argmax(1) == yv).float().mean().item()
    test_predicted = test_logits.argmax(1)
    test_correct = int((test_predicted == ys).sum())
    print(f'\nvalidation accuracy: {val_accuracy * 100:.2f}%')
    print(f'test accuracy (torch): {test_correct / len(ys) * 100:.2f}% ({test_correct}/{len(ys)})')

    # Calibration: one temperature for all classes, fitted on the validation set only.
    temperature = fit_temperature(val_logits, yv)
    print(f'\ntemperature T = {temperature:.4f} (minimises validation NLL of softmax(logits / T))')
    print(f'  validation NLL {nll(val_logits, yv):.4f} -> {nll(val_logits, yv, temperature):.4f}, '
          f'ECE ({ECE_BINS} bins) {ece(val_logits, yv) * 100:.2f}% -> {ece(val_logits, yv, temperature) * 100:.2f}%')
    print(f'  test       NLL {nll(test_logits, ys):.4f} -> {nll(test_logits, ys, temperature):.4f}, '
          f'ECE ({ECE_BINS} bins) {ece(test_logits, ys) * 100:.2f}% -> {ece(test_logits, ys, temperature) * 100:.2f}%')

    # The low-confidence threshold, on calibrated probabilities (the server divides by T before the softmax too).
    rows = threshold_table(val_logits, yv, temperature, THRESHOLDS)
    print_table('validation, calibrated (T applied):', rows)
    print_table('validation, finer grid:', threshold_table(val_logits, yv, temperature, [0.4, 0.5, 0.6, 0.7, 0.8, 0.9]))
    print_table('validation, uncalibrated (T = 1), for comparison:', threshold_table(val_logits, yv, 1.0, THRESHOLDS))
    print_table('test, calibrated (a check, not used for choosing):', threshold_table(test_logits, ys, temperature, THRESHOLDS))
    # Flag as much as possible while the flagged set stays mostly wrong: the largest candidate whose flagged accuracy is
    # below the limit (flagged accuracy rises with the threshold, as more and more confident predictions get flagged).
    eligible = [r for r in rows if r['count'] > 0 and r['flagged_accuracy'] < FLAGGED_ACCURACY_LIMIT]
    chosen = max(eligible, key=lambda r: r['threshold'])['threshold'] if eligible else min(THRESHOLDS)
    print(f'\nchosen low_confidence_threshold: {chosen} (largest of {THRESHOLDS} whose flagged validation predictions are '
          f'< {FLAGGED_ACCURACY_LIMIT * 100:.0f}% accurate)')

    # Export: eval mode (BN uses running stats, dropout off), dynamic batch axis.
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    torch.onnx.export(
        model, torch.zeros(1, 1, 28, 28), args.output,
        input_names=['image'], output_names=['logits'],
        dynamic_axes={'image': {0: 'batch'}, 'logits': {0: 'batch'}},
        opset_version=13, do_constant_folding=True, export_params=True,
    )
    print(f'\nexported {os.path.relpath(args.output, ROOT)} ({os.path.getsize(args.output)} bytes)')

    print('\nfor models/fashion_mnist/config.yaml:')
    print(f'  preprocess.image: mean: [{mean:.7f}], std: [{std:.7f}]')
    print(f'  postprocess: temperature: {temperature:.4f}, low_confidence_threshold: {chosen}')
    print(f'first test logits (for a cross-check): {[round(v, 4) for v in test_logits[0].tolist()]} -> {LABELS[int(test_predicted[0])]}')


if __name__ == '__main__':
    main()
