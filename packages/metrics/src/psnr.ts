import { MetricsError } from "./errors.js";
import { checkImage, checkSameSize, type RgbImage } from "./image.js";

/**
 * Peak signal-to-noise ratio of one image pair, 10·log10(range² / MSE) over all channels and pixels
 * (torchmetrics `peak_signal_noise_ratio(..., data_range=1, dim=(1,2,3))`: per image, then averaged by the caller,
 * the paper's protocol, SVDQuant §5.1). Identical images give +Infinity.
 */
export function psnr(ref: RgbImage, test: RgbImage, dataRange = 1): number {
  checkImage(ref);
  checkImage(test);
  checkSameSize(ref, test);
  if (!(dataRange > 0)) throw new MetricsError("E_ARGUMENT", `data range must be > 0, got ${dataRange}`);
  const a = ref.data;
  const b = test.data;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    s += d * d;
  }
  if (!Number.isFinite(s)) throw new MetricsError("E_NUMERIC", "image holds NaN or Infinity", { file: test.name });
  const mse = s / a.length;
  return 10 * Math.log10((dataRange * dataRange) / mse);
}
