/**
 * sharp (libvips), loaded by the first image decoded or chart drawn: about 130 ms of import that a
 * server of tensor models, and the commands that touch no image, do not pay.
 */
import type Sharp from 'sharp';

let loading: Promise<typeof Sharp> | undefined;

export function loadSharp(): Promise<typeof Sharp> {
  loading ??= import('sharp').then((module) => module.default);
  return loading;
}
