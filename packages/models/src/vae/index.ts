export { Conv2d, conv2dDirect, groupNorm } from "./conv.js";
export {
  imageToRgb8,
  parseVaeConfig,
  VAE_CLASS,
  type VaeConfig,
  VaeDecoder,
  type VaeLoadOptions,
  vaeDecoderParams,
} from "./decoder.js";
