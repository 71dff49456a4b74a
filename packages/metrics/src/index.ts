export { MetricsError, type MetricsErrorCode } from "./errors.js";
export { checkImage, checkSameSize, type Rgb8Image, type RgbImage, toPlanar } from "./image.js";
export { psnr } from "./psnr.js";
export { gaussianWindow, type SsimOptions, ssim } from "./ssim.js";
